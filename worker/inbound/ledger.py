"""The inbound ledger: record verified events once per (source, event id), list, replay.

Domain code: the caller owns the transaction (these functions never commit) and enqueues
the returned ids only after its commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.db import utcnow
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent

# Rows per INSERT: a batch at the settings' maximum (10,000 events, 10 columns each) would
# exceed the bind-parameter limits of SQLite (32,766) and psycopg (65,535) in one statement.
INSERT_CHUNK_ROWS = 1000


@dataclass(frozen=True)
class RecordResult:
    """Ledger ids of newly recorded events (ascending) and how many were already known."""

    accepted_ids: list[int]
    duplicates: int


def record_events(session: Session, source: str, events: Sequence[CanonicalEvent]) -> RecordResult:
    """Insert events as pending; an event id already known for `source` counts as a duplicate.

    One arbitrated `INSERT ... ON CONFLICT DO NOTHING RETURNING id` per chunk, so concurrent
    deliveries of the same event record it exactly once. Repeats inside `events` are
    duplicates too (the first occurrence wins).
    """
    unique: dict[str, CanonicalEvent] = {}
    for event in events:
        unique.setdefault(event.id, event)
    now = utcnow()
    rows = [_row(source, event, now) for event in unique.values()]
    accepted: list[int] = []
    for start in range(0, len(rows), INSERT_CHUNK_ROWS):
        stmt = _insert_ignoring_duplicates(session, rows[start : start + INSERT_CHUNK_ROWS])
        accepted.extend(session.scalars(stmt.returning(InboundEvent.id)))
    accepted.sort()
    return RecordResult(accepted_ids=accepted, duplicates=len(events) - len(accepted))


def list_events(
    session: Session,
    status: EventStatus | None = None,
    since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[InboundEvent]:
    """Ledger rows, newest first, optionally by status and received at or after `since`."""
    stmt = select(InboundEvent).order_by(InboundEvent.id.desc()).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(InboundEvent.status == status.value)
    if since is not None:
        stmt = stmt.where(InboundEvent.received_at >= since)
    return list(session.scalars(stmt))


def get_event(session: Session, event_pk: int) -> InboundEvent | None:
    return session.get(InboundEvent, event_pk)


def mark_for_replay(session: Session, event_pk: int) -> bool:
    """Set an event back to pending with a fresh attempt budget; False if it does not exist.

    `last_error` is kept so an operator still sees why the event was replayed; the next
    attempt overwrites it.
    """
    stmt = (
        update(InboundEvent)
        .where(InboundEvent.id == event_pk)
        .values(status=EventStatus.PENDING.value, attempts=0, handled_at=None, updated_at=utcnow())
        .returning(InboundEvent.id)
    )
    return session.scalars(stmt).first() is not None


def _row(source: str, event: CanonicalEvent, now: datetime) -> dict[str, Any]:
    return {
        "source": source,
        "event_id": event.id,
        "type": event.type,
        "customer_id": event.customer.id,
        "occurred_at": event.occurred_at,
        "payload": event.model_dump(mode="json"),
        "status": EventStatus.PENDING.value,
        "attempts": 0,
        "last_error": None,
        "received_at": now,
        "updated_at": now,
        "handled_at": None,
    }


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> Insert:
    conflict = [InboundEvent.source, InboundEvent.event_id]
    if session.get_bind().dialect.name == "postgresql":
        return (
            postgresql.insert(InboundEvent)
            .values(rows)
            .on_conflict_do_nothing(index_elements=conflict)
        )
    return sqlite.insert(InboundEvent).values(rows).on_conflict_do_nothing(index_elements=conflict)
