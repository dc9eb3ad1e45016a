"""The upsert engine against the in-memory provider, on SQLite and Postgres."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.sync.ledger_rows import store
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.providers.errors import TransientError
from worker.providers.memory import MemoryProvider
from worker.sync.engine import Outcome, PassBusyError, SyncContext, process_event
from worker.sync.models import PassMapping
from worker.sync.rules import user_provided_id
from worker.sync.templates import TemplateResolver, UnknownTemplateError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_event(
    event_id: str, *, minutes: int = 0, tier: str = "gold", customer: str = "c1", **extra: Any
) -> CanonicalEvent:
    return CanonicalEvent.model_validate(
        {
            "id": event_id,
            "type": extra.get("type", "customer.updated"),
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "customer": {
                "id": customer,
                "first_name": "Ada",
                "attributes": {"tier": tier, "points": 10},
            },
        }
    )


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def ctx(make_settings: Callable[..., Settings], provider: MemoryProvider) -> SyncContext:
    settings = make_settings()
    return SyncContext(settings, provider, TemplateResolver(provider))


def apply(db: Database, event_id: int, ctx: SyncContext) -> list[Outcome]:
    with db.session() as session:
        result = process_event(session, event_id, ctx)
    return [p.outcome for p in result.passes]


def apply_when_free(db: Database, event_id: int, ctx: SyncContext) -> list[Outcome]:
    """Apply, retrying while another attempt holds the pass (as the task does)."""
    while True:
        try:
            return apply(db, event_id, ctx)
        except PassBusyError:
            time.sleep(0.01)


def mapping(db: Database) -> PassMapping:
    with db.sessions() as session:
        return session.execute(select(PassMapping)).scalar_one()


def test_new_customer_creates_one_pass_and_marks_event_handled(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    event_id = store(db, make_event("e1", type="customer.created"))
    assert apply(db, event_id, ctx) == [Outcome.CREATED]
    (stored,) = provider.live()
    assert stored.user_provided_id == "passsync-loyalty-c1"
    assert stored.template_id == "tpl-loyalty"
    assert stored.fields == {"firstName": "Ada", "tier": "gold", "points": 10}
    row = mapping(db)
    assert (row.provider_pass_id, row.status, row.last_event_id) == (stored.pass_id, "active", "e1")
    assert row.download_page == f"https://example.test/p/{stored.pass_id}"
    with db.sessions() as session:
        event = session.get(InboundEvent, event_id)
        assert event is not None and event.status == EventStatus.HANDLED and event.attempts == 1


def test_same_event_twice_makes_no_second_call(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    event_id = store(db, make_event("e1"))
    apply(db, event_id, ctx)
    calls_before = dict(provider.calls)
    with db.session() as session:
        result = process_event(session, event_id, ctx)
    assert result.already_handled and result.passes == []
    assert dict(provider.calls) == calls_before


def test_newer_event_updates_and_older_event_is_skipped(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    apply(db, store(db, make_event("e1", minutes=0, tier="bronze")), ctx)
    assert apply(db, store(db, make_event("e3", minutes=10, tier="gold")), ctx) == [Outcome.UPDATED]
    writes = provider.calls["create"] + provider.calls["update"]
    assert apply(db, store(db, make_event("e2", minutes=5, tier="silver")), ctx) == [Outcome.STALE]
    assert provider.calls["create"] + provider.calls["update"] == writes
    assert provider.live()[0].fields["tier"] == "gold"
    assert mapping(db).last_event_id == "e3"


def test_tie_on_time_is_broken_by_event_id(db: Database, ctx: SyncContext) -> None:
    apply(db, store(db, make_event("b", tier="gold")), ctx)
    assert apply(db, store(db, make_event("a", tier="silver")), ctx) == [Outcome.STALE]
    assert apply(db, store(db, make_event("c", tier="silver")), ctx) == [Outcome.UPDATED]


def test_unchanged_fields_make_no_call(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    apply(db, store(db, make_event("e1", minutes=0)), ctx)
    assert apply(db, store(db, make_event("e2", minutes=1)), ctx) == [Outcome.UNCHANGED]
    assert provider.calls["update"] == 0
    assert mapping(db).last_event_id == "e2"


def test_crash_between_create_and_commit_adopts_the_existing_pass(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given the provider applies the create but the answer is lost (our process "crashes")
    provider.fail_after_next["create"] = [TransientError("connection reset")]
    event_id = store(db, make_event("e1"))
    with pytest.raises(TransientError):
        apply(db, event_id, ctx)
    assert no_pass_recorded(db)
    # When the event is retried
    assert apply(db, event_id, ctx) == [Outcome.ADOPTED]
    # Then the existing pass is adopted, not twinned
    (stored,) = provider.live()
    assert mapping(db).provider_pass_id == stored.pass_id
    assert provider.calls["create"] == 2 and provider.calls["get"] == 1


def no_pass_recorded(db: Database) -> bool:
    """The claimed row holds no pass, no claim, and stays unconfirmed."""
    with db.sessions() as session:
        rows = session.execute(select(PassMapping)).scalars().all()
    return all(
        r.provider_pass_id is None and r.claim_token is None and r.unconfirmed_since is not None
        for r in rows
    )


def test_pass_deleted_at_provider_is_recreated(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    apply(db, store(db, make_event("e1", tier="bronze")), ctx)
    old_id = mapping(db).provider_pass_id
    assert old_id is not None
    provider.delete_externally(old_id)
    assert apply(db, store(db, make_event("e2", minutes=1, tier="gold")), ctx) == [
        Outcome.RECREATED
    ]
    (stored,) = provider.live()
    assert stored.pass_id != old_id and mapping(db).provider_pass_id == stored.pass_id


def test_unknown_template_fails_with_a_clear_reason_and_changes_nothing(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    provider.templates = {"tpl-x": "Something Else"}
    event_id = store(db, make_event("e1"))
    with pytest.raises(UnknownTemplateError, match="'Loyalty Card' not found"):
        apply(db, event_id, ctx)
    assert provider.passes == {} and no_pass_recorded(db)


def test_event_type_without_rule_is_handled_without_calls(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    event_id = store(db, make_event("e1", type="order.completed"))
    assert apply(db, event_id, ctx) == []
    assert sum(provider.calls.values()) == 0


def test_concurrent_deliveries_of_one_event_write_once(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    event_id = store(db, make_event("e1"))
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            apply_when_free(db, event_id, ctx)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert provider.calls["create"] == 1 and provider.calls["update"] == 0
    assert len(provider.live()) == 1


def test_concurrent_events_for_one_customer_end_at_the_newest(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    ids = [store(db, make_event(f"e{i:02d}", minutes=i, tier=f"t{i}")) for i in range(8)]
    threads = [threading.Thread(target=apply_when_free, args=(db, i, ctx)) for i in reversed(ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (stored,) = provider.live()
    assert stored.fields["tier"] == "t7"
    assert mapping(db).last_event_id == "e07"


@pytest.mark.parametrize(
    ("customer", "expected"),
    [
        ("c-42", "passsync-loyalty-c-42"),
        ("a b/c", "passsync-loyalty-~"),
    ],
)
def test_user_provided_id_is_deterministic_and_url_safe(customer: str, expected: str) -> None:
    first = user_provided_id("passsync", "loyalty", customer)
    assert first == user_provided_id("passsync", "loyalty", customer)
    assert first.startswith(expected)
    assert all(ch.isalnum() or ch in "-_.~" for ch in first)


def test_user_provided_ids_differ_for_different_pairs() -> None:
    ids = {
        user_provided_id("p", key, customer)
        for key in ("loyalty", "welcome")
        for customer in ("c1", "c2", "c 1", "~c1")
    }
    assert len(ids) == 8


def test_lost_update_answer_does_not_let_an_equal_newer_event_skip_the_write(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given a pass at gold, and an update to silver that reached the provider but whose
    # answer was lost (so our transaction rolled back and still says gold)
    apply(db, store(db, make_event("e1", minutes=0, tier="gold")), ctx)
    provider.fail_after_next["update"] = [TransientError("answer lost")]
    e2 = store(db, make_event("e2", minutes=5, tier="silver"))
    with pytest.raises(TransientError):
        apply(db, e2, ctx)
    assert provider.live()[0].fields["tier"] == "silver"
    # When a newer event asks for gold again while e2 is still unfinished
    assert apply(db, store(db, make_event("e3", minutes=9, tier="gold")), ctx) == [Outcome.UPDATED]
    # Then the provider shows the newest data, and e2's retry is skipped as stale
    assert provider.live()[0].fields["tier"] == "gold"
    assert apply(db, e2, ctx) == [Outcome.STALE]
    assert provider.live()[0].fields["tier"] == "gold"
