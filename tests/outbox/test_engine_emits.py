"""The engine emits in its recording transaction: once per pass, whatever fails around it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from tests.outbox.conftest import customer_event
from tests.sync.ledger_rows import store
from worker.config import Settings, SyncSettings
from worker.db import Database
from worker.inbound.schema import CanonicalEvent
from worker.outbox.models import OutboxEvent
from worker.providers.errors import TransientError
from worker.providers.memory import MemoryProvider
from worker.sync.engine import SyncContext, process_event
from worker.sync.templates import TemplateResolver

TWO_PASSES = [
    {
        "name": "both",
        "on": ["customer.created"],
        "actions": [
            {"upsert": "loyalty", "template": "Loyalty Card", "fields": {"t": "customer.id"}},
            {"upsert": "welcome", "template": "Welcome Discount", "fields": {"t": "customer.id"}},
        ],
    }
]


def outbox(db: Database) -> list[tuple[str, str | None, str]]:
    with db.sessions() as session:
        rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        return [(r.type, r.payload.get("pass_key"), r.payload.get("pass_id")) for r in rows]


@pytest.fixture
def ctx(make_settings: Callable[..., Settings], provider: MemoryProvider) -> SyncContext:
    settings = make_settings()
    settings = settings.model_copy(
        update={"sync": SyncSettings.model_validate({"rules": TWO_PASSES})}
    )
    return SyncContext(settings, provider, TemplateResolver(provider))


def test_a_pass_done_before_a_failure_is_announced_once(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # given the second pass's create fails after the first pass was created
    ledger_id = store(db, CanonicalEvent.model_validate(customer_event("e1")))
    calls = {"n": 0}
    original = provider.create_pass

    def second_fails(**kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise TransientError("boom")
        return original(**kwargs)  # type: ignore[arg-type]

    provider.create_pass = second_fails  # type: ignore[method-assign]
    # when the event is applied: the failure propagates, the first pass is recorded
    with pytest.raises(TransientError), db.session() as session:
        process_event(session, ledger_id, ctx)
    loyalty = provider.live()[0].pass_id
    assert outbox(db) == [("pass.issued", "loyalty", loyalty)]
    # when it is retried and succeeds
    with db.session() as session:
        process_event(session, ledger_id, ctx)
    # then only the second pass is announced now
    welcome = next(p.pass_id for p in provider.live() if p.pass_id != loyalty)
    assert outbox(db) == [
        ("pass.issued", "loyalty", loyalty),
        ("pass.issued", "welcome", welcome),
    ]


def test_a_create_whose_answer_was_lost_is_announced_once_on_adoption(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # given the provider creates the loyalty pass but its answer is lost
    ledger_id = store(db, CanonicalEvent.model_validate(customer_event("e1")))
    provider.fail_after_next["create"] = [TransientError("answer lost")]
    with pytest.raises(TransientError), db.session() as session:
        process_event(session, ledger_id, ctx)
    # then nothing was announced: the change was not recorded
    assert outbox(db) == []
    # when retried: the create says "already exists" and the pass is adopted
    with db.session() as session:
        result = process_event(session, ledger_id, ctx)
    assert sorted(p.outcome.value for p in result.passes) == ["adopted", "created"]
    # then each pass is announced exactly once, the adopted one with its real id
    found = outbox(db)
    assert sorted(found) == sorted(
        ("pass.issued", p_key, p_id)
        for p_key, p_id in [
            ("loyalty", provider.live()[0].pass_id),
            ("welcome", provider.live()[1].pass_id),
        ]
    )
