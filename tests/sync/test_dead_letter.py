"""The event task's failure handling, in-process: retries, the dead letter, waits, the sweeper."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.sync.ledger_rows import store
from tests.sync.test_claims_and_coalescing import make_event
from worker.config import Settings
from worker.db import Database, utcnow
from worker.inbound.models import InboundEvent
from worker.providers.errors import RateLimitedError, RejectedError, TransientError
from worker.providers.memory import MemoryProvider
from worker.sync.engine import SyncContext
from worker.sync.models import PassMapping
from worker.sync.templates import TemplateResolver
from worker.tasks import jobs
from worker.tasks.runtime import Runtime, reset_runtime, set_runtime


class Retried(Exception):
    def __init__(self, countdown: float) -> None:
        super().__init__(countdown)
        self.countdown = countdown


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def runtime(
    db: Database,
    make_settings: Callable[..., Settings],
    provider: MemoryProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Runtime]]:
    """Installs a task runtime over the test database and the memory provider."""

    def install(**sync: Any) -> Runtime:
        sync.setdefault("coalesce_window_ms", 0)
        settings = make_settings(database_url=db.url, sync=sync)
        ctx = SyncContext(settings, provider, TemplateResolver(provider))
        built = Runtime(settings=settings, db=db, sync=ctx)
        set_runtime(built)
        return built

    def retry(**kwargs: Any) -> Retried:
        return Retried(kwargs["countdown"])

    monkeypatch.setattr(jobs.process_event, "retry", retry)
    yield install
    reset_runtime()


def event_row(db: Database, row_id: int) -> InboundEvent:
    with db.sessions() as session:
        row = session.get(InboundEvent, row_id)
        assert row is not None
        return row


def status(db: Database, row_id: int) -> tuple[str, int, str | None]:
    row = event_row(db, row_id)
    return row.status, row.attempts, row.last_error


def test_a_transient_error_marks_the_event_failed_and_retries_with_backoff(
    db: Database, runtime: Callable[..., Runtime], provider: MemoryProvider
) -> None:
    runtime(retry_base_seconds=2, retry_max_seconds=60)
    provider.fail_next["create"] = [TransientError("create_pass: server error (503)")]
    row_id = store(db, make_event("e1"))
    with pytest.raises(Retried) as retried:
        jobs.process_event(row_id)
    assert 0 <= retried.value.countdown <= 2
    assert status(db, row_id) == ("failed", 1, "transient: create_pass: server error (503)")
    assert provider.live() == []
    # When the retry comes, it is applied
    assert jobs.process_event(row_id) == "loyalty:created"
    assert status(db, row_id)[:2] == ("handled", 2)


def test_the_last_attempt_sends_the_event_to_the_dead_letter(
    db: Database, runtime: Callable[..., Runtime], provider: MemoryProvider
) -> None:
    runtime(max_attempts=2)
    provider.fail_next["create"] = [TransientError("503"), TransientError("504")]
    row_id = store(db, make_event("e1"))
    with pytest.raises(Retried):
        jobs.process_event(row_id)
    assert jobs.process_event(row_id) == "dead"
    assert status(db, row_id) == ("dead", 2, "gave up after 2 attempts: 504")
    assert provider.live() == [] and provider.calls["create"] == 2


def test_a_permanent_rejection_is_dead_with_the_providers_reasons(
    db: Database, runtime: Callable[..., Runtime], provider: MemoryProvider
) -> None:
    runtime()
    refusal = RejectedError(
        "create_pass: rejected (400): templateId is invalid",
        status=400,
        messages=["templateId is invalid", "firstName is too long"],
    )
    provider.fail_next["create"] = [refusal]
    row_id = store(db, make_event("e1"))
    assert jobs.process_event(row_id) == "dead"
    assert status(db, row_id) == (
        "dead",
        1,
        "rejected: create_pass: rejected (400): templateId is invalid; firstName is too long",
    )
    assert provider.live() == []
    # A stray redelivery of a dead event does nothing
    assert jobs.process_event(row_id) == "duplicate"
    assert provider.calls["create"] == 1


def test_rate_limited_waits_as_told_without_using_an_attempt(
    db: Database, runtime: Callable[..., Runtime], provider: MemoryProvider
) -> None:
    runtime(retry_max_seconds=60)
    provider.fail_next["create"] = [RateLimitedError("429", retry_after=7)]
    row_id = store(db, make_event("e1"))
    with pytest.raises(Retried) as retried:
        jobs.process_event(row_id)
    assert 7 <= retried.value.countdown <= 8
    assert status(db, row_id) == ("failed", 0, "transient: 429")


def test_every_countdown_stays_below_the_visibility_timeout(
    db: Database, runtime: Callable[..., Runtime], provider: MemoryProvider
) -> None:
    built = runtime(retry_max_seconds=10_000)
    built.settings.celery.visibility_timeout_seconds = 60
    provider.fail_next["create"] = [RateLimitedError("429", retry_after=3600)]
    row_id = store(db, make_event("e1"))
    with pytest.raises(Retried) as retried:
        jobs.process_event(row_id)
    assert retried.value.countdown == 30


def test_a_busy_pass_waits_briefly_without_using_an_attempt(
    db: Database, runtime: Callable[..., Runtime], provider: MemoryProvider
) -> None:
    runtime()
    jobs.process_event(store(db, make_event("e1", minutes=1)))
    with db.session() as session:
        session.execute(
            update(PassMapping).values(
                claim_token="other", claim_expires_at=utcnow() + timedelta(minutes=5)
            )
        )
    row_id = store(db, make_event("e2", minutes=2, tier="silver"))
    with pytest.raises(Retried) as retried:
        jobs.process_event(row_id)
    assert 0.05 <= retried.value.countdown <= 1.2
    assert status(db, row_id) == ("pending", 0, None)
    assert provider.calls["update"] == 0


def test_a_404_the_rule_does_not_recreate_is_dead(
    db: Database, runtime: Callable[..., Runtime], provider: MemoryProvider
) -> None:
    rule = {
        "name": "card",
        "on": ["customer.updated"],
        "actions": [
            {
                "upsert": "loyalty",
                "template": "Loyalty Card",
                "fields": {"tier": "customer.attributes.tier"},
                "recreate_if_missing": False,
            }
        ],
    }
    runtime(rules=[rule])
    jobs.process_event(store(db, make_event("e1", minutes=1)))
    provider.delete_externally(provider.live()[0].pass_id)
    row_id = store(db, make_event("e2", minutes=2, tier="silver"))
    assert jobs.process_event(row_id) == "dead"
    state, attempts, reason = status(db, row_id)
    assert (state, attempts) == ("dead", 1)
    assert reason == (
        "rejected: pass pass-1 ('loyalty') was deleted at the provider and rule card does not "
        "recreate it"
    )
    assert provider.live() == [] and provider.calls["create"] == 1


# --- the sweeper -----------------------------------------------------------------------------


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[int], float | None]]:
    calls: list[tuple[list[int], float | None]] = []

    def record(ids: list[int], *, countdown: float | None = None) -> None:
        calls.append((list(ids), countdown))

    monkeypatch.setattr(jobs, "enqueue_events", record)
    return calls


def age(db: Database, row_id: int, **values: Any) -> None:
    with db.session() as session:
        session.execute(update(InboundEvent).where(InboundEvent.id == row_id).values(**values))


def test_the_sweeper_sends_lost_events_and_backs_off_on_its_own_sends(
    db: Database,
    runtime: Callable[..., Runtime],
    published: list[tuple[list[int], float | None]],
) -> None:
    # Given a pending event untouched for 2 minutes, a fresh one, a handled and a dead one
    runtime(sweep_stale_after_seconds=60)
    ids = [store(db, make_event(f"e{n}", minutes=n)) for n in range(4)]
    two_minutes_ago = utcnow() - timedelta(minutes=2)
    age(db, ids[0], updated_at=two_minutes_ago)
    age(db, ids[2], updated_at=two_minutes_ago, status="handled")
    age(db, ids[3], updated_at=two_minutes_ago, status="dead")
    # When the sweeper runs
    assert jobs.sweep_pending() == 1
    # Then only the lost one is sent, at once, and marked as sent by the sweeper
    assert published == [([ids[0]], 0)]
    row = event_row(db, ids[0])
    assert (row.sweeps, row.enqueued_at is not None) == (1, True)
    # And it is left alone while it may still sit in the queue: 2x the wait after one sweep
    back = {"updated_at": two_minutes_ago}
    age(db, ids[0], enqueued_at=utcnow() - timedelta(seconds=100), **back)
    assert jobs.sweep_pending() == 0
    age(db, ids[0], enqueued_at=utcnow() - timedelta(seconds=130), **back)
    assert jobs.sweep_pending() == 1
    assert event_row(db, ids[0]).sweeps == 2


def test_the_sweeper_leaves_a_failed_event_its_retry_countdown(
    db: Database,
    runtime: Callable[..., Runtime],
    published: list[tuple[list[int], float | None]],
) -> None:
    runtime(sweep_stale_after_seconds=60, retry_max_seconds=300)
    row_id = store(db, make_event("e1"))
    age(db, row_id, status="failed", attempts=3, updated_at=utcnow() - timedelta(minutes=5))
    assert jobs.sweep_pending() == 0  # its retry may still be counting down
    age(db, row_id, updated_at=utcnow() - timedelta(minutes=7))
    assert jobs.sweep_pending() == 1
    assert published == [([row_id], 0)]


def test_enqueue_publishes_at_once_the_pacer_decides_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[dict[str, Any]] = []

    def apply_async(**kwargs: Any) -> None:
        sent.append({k: v for k, v in kwargs.items() if k != "producer"})

    monkeypatch.setattr(jobs.process_event, "apply_async", apply_async)
    monkeypatch.setattr(jobs.celery_app, "producer_or_acquire", NoProducer)
    jobs.enqueue_events([7])
    jobs.enqueue_events([8], countdown=2)
    assert sent == [
        {"args": [7], "queue": "realtime"},
        {"args": [8], "queue": "realtime", "countdown": 2},
    ]


class FixedPacer:
    def __init__(self, wait: float) -> None:
        self.wait = wait
        self.asked: list[str] = []

    def delay(self, customer_id: str) -> float:
        self.asked.append(customer_id)
        return self.wait


def test_a_paced_event_waits_for_its_window_end_untouched(
    db: Database,
    runtime: Callable[..., Runtime],
    provider: MemoryProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an event whose customer was applied less than a window ago (the pacer says 0.4 s)
    built = runtime(coalesce_window_ms=500)
    built.pacer = pacer = FixedPacer(0.4)
    row_id = store(db, make_event("e1"))
    retries: list[dict[str, Any]] = []

    def retry(**kwargs: Any) -> Retried:
        retries.append(kwargs)
        return Retried(kwargs["countdown"])

    monkeypatch.setattr(jobs.process_event, "retry", retry)
    # When its task runs
    with pytest.raises(Retried):
        jobs.process_event.run(row_id)
    # Then it comes back at the window's end, marked paced, and nothing was done meanwhile
    assert retries == [{"countdown": 0.4, "max_retries": None, "kwargs": {"paced": True}}]
    assert pacer.asked == ["c1"]
    assert provider.calls == {}
    assert status(db, row_id) == ("pending", 0, None)
    # And when it comes back paced, it runs without asking again
    assert jobs.process_event.run(row_id, paced=True).endswith(":created")
    assert pacer.asked == ["c1"]


def test_a_quiet_customer_runs_at_once_and_a_handled_event_is_not_paced(
    db: Database, runtime: Callable[..., Runtime], provider: MemoryProvider
) -> None:
    built = runtime(coalesce_window_ms=500)
    built.pacer = pacer = FixedPacer(0.0)
    row_id = store(db, make_event("e1"))
    assert jobs.process_event.run(row_id).endswith(":created")
    assert pacer.asked == ["c1"]
    # A redelivered message of the handled event does not touch the customer's schedule
    assert jobs.process_event.run(row_id) == "duplicate"
    assert pacer.asked == ["c1"]


class NoProducer:
    def __init__(self, *_args: Any) -> None:
        pass

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


def test_nothing_is_swept_when_nothing_is_stale(
    db: Database,
    runtime: Callable[..., Runtime],
    published: list[tuple[list[int], float | None]],
) -> None:
    runtime()
    store(db, make_event("e1"))
    assert jobs.sweep_pending() == 0
    assert published == []
    with db.sessions() as session:
        assert session.scalars(select(InboundEvent.sweeps)).all() == [0]
