"""Retry countdowns: bounded, below the visibility timeout, and 429s use no attempts."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from worker.db import Database
from worker.inbound.models import EventStatus, InboundEvent
from worker.providers.errors import RateLimitedError, TransientError
from worker.sync.failures import record_failure
from worker.tasks.jobs import retry_countdown


def test_countdown_never_exceeds_cap_or_half_the_visibility_timeout() -> None:
    for attempts in range(1, 30):
        wait = retry_countdown(
            attempts, TransientError("x"), base=2, cap=300, visibility_timeout=3600
        )
        assert 0 <= wait <= 300
        assert (
            retry_countdown(
                attempts, TransientError("x"), base=2, cap=10_000, visibility_timeout=60
            )
            <= 30
        )


def test_rate_limited_waits_at_least_retry_after() -> None:
    wait = retry_countdown(
        1, RateLimitedError("slow", retry_after=7), base=2, cap=300, visibility_timeout=3600
    )
    assert 7 <= wait <= 8


def test_uncounted_failures_keep_the_event_pending_without_using_attempts(db: Database) -> None:
    with db.session() as session:
        row = InboundEvent(
            source="crm",
            event_id="e1",
            type="customer.updated",
            customer_id="c1",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            payload={},
        )
        session.add(row)
        session.flush()
        event_id = row.id
    with db.session() as session:
        assert record_failure(session, event_id, "429", final=False, count=False) == 0
    with db.session() as session:
        assert record_failure(session, event_id, "503", final=False) == 1
    with db.session() as session:
        assert record_failure(session, event_id, "gave up", final=True, count=False) == 1
    with db.sessions() as session:
        stored = session.execute(select(InboundEvent)).scalar_one()
    assert (stored.status, stored.attempts, stored.last_error) == (
        EventStatus.DEAD,
        1,
        "gave up",
    )
    with db.session() as session:
        assert record_failure(session, 999_999, "gone", final=True) == 0
