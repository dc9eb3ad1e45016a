"""Ledger status changes made by the worker: failed attempts and final failures."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from worker.db import utcnow
from worker.inbound.models import EventStatus, InboundEvent

MAX_ERROR_CHARS = 2000


def record_failure(
    session: Session, event_id: int, error: str, *, final: bool, count: bool = True
) -> int:
    """Record a failed attempt (`count` adds it to the attempts); `final` marks the event
    failed. Returns the attempts so far."""
    row = session.get(InboundEvent, event_id, with_for_update=True)
    if row is None:
        return 0  # nothing to record: the task drops the message
    if row.status == EventStatus.HANDLED:
        return row.attempts  # another delivery finished it meanwhile
    if count:
        row.attempts += 1
    row.last_error = error[:MAX_ERROR_CHARS]
    row.status = EventStatus.FAILED if final else EventStatus.PENDING
    return row.attempts


def stale_pending_ids(
    session: Session, *, fresh_after: timedelta, retry_grace: timedelta, limit: int = 500
) -> list[int]:
    """Pending events nobody touched for a while: the broker lost them, or never had them.

    A never-attempted event is stale after `fresh_after`; one waiting for a retry countdown
    gets `retry_grace` more, so the sweeper does not race the retry it already has.
    """
    now: datetime = utcnow()
    query = (
        select(InboundEvent.id)
        .where(
            InboundEvent.status == EventStatus.PENDING,
            or_(
                and_(InboundEvent.attempts == 0, InboundEvent.updated_at < now - fresh_after),
                InboundEvent.updated_at < now - fresh_after - retry_grace,
            ),
        )
        .order_by(InboundEvent.id)
        .limit(limit)
    )
    return list(session.execute(query).scalars())


def touch(session: Session, ids: list[int]) -> None:
    """Mark swept events as just enqueued, so the next sweep leaves them alone for a while."""
    if ids:
        session.execute(
            update(InboundEvent).where(InboundEvent.id.in_(ids)).values(updated_at=utcnow())
        )
