"""Ledger status the worker reads and the sweeper changes (a failed attempt: sync.failures)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from worker.db import utcnow
from worker.inbound.models import EventStatus, InboundEvent

MAX_ERROR_CHARS = 2000
UNFINISHED = (EventStatus.PENDING.value, EventStatus.FAILED.value)
# The sweeper waits stale_after * 2**sweeps after its own last publish, up to this power.
MAX_SWEEP_BACKOFF = 6


def stale_pending_ids(
    session: Session, *, fresh_after: timedelta, retry_grace: timedelta, limit: int = 500
) -> list[int]:
    """Unfinished events nobody touched for a while: the broker lost them, or never had them.

    A never-attempted event is stale after `fresh_after`; one waiting for a retry countdown
    gets `retry_grace` more, so the sweeper does not race the retry it already has. After
    each of its own publishes the sweeper waits twice as long as before (up to 64 times), so
    events that are only stuck behind a long queue are not published again and again.
    """
    now: datetime = utcnow()
    query = (
        select(InboundEvent.id)
        .where(
            InboundEvent.status.in_(UNFINISHED),
            or_(
                and_(InboundEvent.attempts == 0, InboundEvent.updated_at < now - fresh_after),
                InboundEvent.updated_at < now - fresh_after - retry_grace,
            ),
            _sweep_backoff_over(now, fresh_after),
        )
        .order_by(InboundEvent.id)
        .limit(limit)
    )
    return list(session.execute(query).scalars())


def _sweep_backoff_over(now: datetime, fresh_after: timedelta) -> ColumnElement[bool]:
    # One comparison per backoff step keeps this plain SQL on every backend.
    steps = [
        and_(InboundEvent.sweeps == k, InboundEvent.enqueued_at < now - fresh_after * 2**k)
        for k in range(MAX_SWEEP_BACKOFF)
    ]
    cap = now - fresh_after * 2**MAX_SWEEP_BACKOFF
    last = and_(InboundEvent.sweeps >= MAX_SWEEP_BACKOFF, InboundEvent.enqueued_at < cap)
    return or_(InboundEvent.enqueued_at.is_(None), *steps, last)


def touch(session: Session, ids: list[int]) -> None:
    """Mark swept events as just enqueued, so the next sweep leaves them alone for longer."""
    if ids:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_(ids))
            .values(enqueued_at=utcnow(), sweeps=InboundEvent.sweeps + 1)
        )


def unfinished_customer(session: Session, event_id: int) -> str | None:
    """The customer of a ledger event still to be applied; None when handled, dead or absent."""
    return session.scalar(
        select(InboundEvent.customer_id).where(
            InboundEvent.id == event_id, InboundEvent.status.in_(UNFINISHED)
        )
    )
