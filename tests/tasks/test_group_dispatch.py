"""A commit group's events applied in one task: concurrently, and anything unusual handed on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.sync.ledger_rows import store
from tests.sync.test_claims_and_coalescing import T0
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.providers.errors import TransientError
from worker.providers.memory import MemoryProvider
from worker.sync.engine import SyncContext
from worker.sync.templates import TemplateResolver
from worker.tasks import jobs
from worker.tasks.runtime import Runtime, reset_runtime, set_runtime


def customer_event(n: int) -> CanonicalEvent:
    return CanonicalEvent.model_validate(
        {
            "id": f"e{n}",
            "type": "customer.updated",
            "occurred_at": (T0 + timedelta(seconds=n)).isoformat(),
            "customer": {"id": f"c{n}", "first_name": "Ada", "attributes": {"tier": "gold"}},
        }
    )


class Pacer:
    def __init__(self, waits: dict[str, float]) -> None:
        self.waits = waits

    def delay(self, customer_id: str) -> float:
        return self.waits.get(customer_id, 0.0)


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def handed_on(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the group publishes as single-event tasks (nothing reaches a broker)."""
    sent: list[dict[str, Any]] = []

    def apply_async(**kwargs: Any) -> None:
        sent.append(kwargs)

    monkeypatch.setattr(jobs.process_event, "apply_async", apply_async)
    return sent


@pytest.fixture
def runtime(
    db: Database, make_settings: Callable[..., Settings], provider: MemoryProvider
) -> Iterator[Callable[..., Runtime]]:
    def install(**sync: Any) -> Runtime:
        settings = make_settings(database_url=db.url, sync=sync)
        ctx = SyncContext(settings, provider, TemplateResolver(provider))
        built = Runtime(settings=settings, db=db, sync=ctx)
        set_runtime(built)
        return built

    yield install
    reset_runtime()


def statuses(db: Database, ids: list[int]) -> list[tuple[str, int]]:
    with db.sessions() as session:
        rows = session.execute(
            select(InboundEvent.status, InboundEvent.attempts)
            .where(InboundEvent.id.in_(ids))
            .order_by(InboundEvent.id)
        ).all()
    return [(status, attempts) for status, attempts in rows]


def test_a_group_is_applied_in_its_own_task_concurrently(
    db: Database,
    runtime: Callable[..., Runtime],
    provider: MemoryProvider,
    handed_on: list[dict[str, Any]],
) -> None:
    # Given twelve new customers' events in one commit group, four applied at a time
    runtime(group_concurrency=4, coalesce_window_ms=0)
    ids = [store(db, customer_event(n)) for n in range(12)]
    # When the group's task runs
    applied = jobs.dispatch_events_task.run(ids)
    # Then every event was applied here, one create each, and nothing was published
    assert applied == 12
    assert statuses(db, ids) == [("handled", 1)] * 12
    assert provider.calls == {"create": 12, "list_templates": 1}
    assert sorted(p.user_provided_id for p in provider.live()) == sorted(
        f"passsync-loyalty-c{n}" for n in range(12)
    )
    assert handed_on == []


def test_a_failing_event_leaves_the_group_for_its_own_task_with_no_attempt_used(
    db: Database,
    runtime: Callable[..., Runtime],
    provider: MemoryProvider,
    handed_on: list[dict[str, Any]],
) -> None:
    # Given a group of three where the provider fails the first create
    runtime(group_concurrency=1, coalesce_window_ms=0)
    ids = [store(db, customer_event(n)) for n in range(3)]
    provider.fail_next["create"] = [TransientError("create_pass: server error (503)")]
    # When the group's task runs
    applied = jobs.dispatch_events_task.run(ids)
    # Then the other two are applied, and the failed one goes on as its own task at once,
    # still pending with no attempt counted (its own task applies the retry policy)
    assert applied == 2
    assert statuses(db, ids) == [("pending", 0), ("handled", 1), ("handled", 1)]
    assert handed_on == [{"args": [ids[0]], "kwargs": {"paced": True}, "queue": "realtime"}]


def test_a_paced_event_waits_in_its_own_task_untouched(
    db: Database,
    runtime: Callable[..., Runtime],
    provider: MemoryProvider,
    handed_on: list[dict[str, Any]],
) -> None:
    # Given a group where one customer was applied less than a window ago (0.7 s to wait)
    built = runtime(group_concurrency=2, coalesce_window_ms=1000)
    built.pacer = Pacer({"c1": 0.7})
    ids = [store(db, customer_event(n)) for n in range(2)]
    # When the group's task runs
    assert jobs.dispatch_events_task.run(ids) == 1
    # Then c0 was applied now and c1 comes back, paced, at its window's end
    assert statuses(db, ids) == [("handled", 1), ("pending", 0)]
    assert handed_on == [
        {"args": [ids[1]], "kwargs": {"paced": True}, "queue": "realtime", "countdown": 0.7}
    ]
    assert provider.calls == {"create": 1, "list_templates": 1}


def test_a_redelivered_group_applies_nothing_twice(
    db: Database,
    runtime: Callable[..., Runtime],
    provider: MemoryProvider,
    handed_on: list[dict[str, Any]],
) -> None:
    runtime(group_concurrency=4, coalesce_window_ms=0)
    ids = [store(db, customer_event(n)) for n in range(5)]
    jobs.dispatch_events_task.run(ids)
    # A worker lost before its ack: the same group again
    assert jobs.dispatch_events_task.run(ids) == 5
    assert provider.calls == {"create": 5, "list_templates": 1}
    assert handed_on == []
