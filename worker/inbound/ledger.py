"""The inbound ledger: record verified events once per (source, event id), list, replay.

Domain code: the caller owns the transaction (these functions never commit) and enqueues
the returned ids only after its commit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert, select, text, update
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
    return record_batches(session, [(source, events)])[0]


def record_batches(
    session: Session, batches: Sequence[tuple[str, Sequence[CanonicalEvent]]]
) -> list[RecordResult]:
    """`record_events` for several requests at once (group commit), one result per batch.

    All rows go into the same statements, so N concurrent requests cost one round trip and,
    in the caller's single commit, one fsync. An event that appears in two batches is
    accepted for the first and a duplicate for the second, as if they had arrived in order.
    """
    plan = GroupPlan(batches)
    insert = _insert_unnest if session.get_bind().dialect.name == "postgresql" else _insert_values
    for chunk in plan.chunks():
        plan.accept(insert(session, chunk))
    return plan.results()


class GroupPlan:
    """The rows of a group of batches, deduplicated, and the bookkeeping back to each batch."""

    def __init__(self, batches: Sequence[tuple[str, Sequence[CanonicalEvent]]]) -> None:
        self._batches = batches
        self._owner: dict[tuple[str, str], int] = {}
        self.rows: list[tuple[str, CanonicalEvent]] = []
        for index, (source, events) in enumerate(batches):
            for event in events:
                key = (source, event.id)
                if key not in self._owner:
                    self._owner[key] = index
                    self.rows.append((source, event))
        self._accepted: list[list[int]] = [[] for _ in batches]

    def chunks(self) -> Iterable[Sequence[tuple[str, CanonicalEvent]]]:
        for start in range(0, len(self.rows), INSERT_CHUNK_ROWS):
            yield self.rows[start : start + INSERT_CHUNK_ROWS]

    def accept(self, returned: Iterable[tuple[int, str, str]]) -> None:
        """Record the `(id, source, event_id)` rows an insert returned (the new ones)."""
        for pk, source, event_id in returned:
            self._accepted[self._owner[(source, event_id)]].append(pk)

    def results(self) -> list[RecordResult]:
        out = []
        for ids, (_source, events) in zip(self._accepted, self._batches, strict=True):
            ids.sort()
            out.append(RecordResult(accepted_ids=ids, duplicates=len(events) - len(ids)))
        return out


@dataclass(frozen=True)
class IgnoredEvent:
    """A sender's event that its source does not map: kept, with the reason, never processed."""

    event_id: str
    sender_type: str
    reason: str
    occurred_at: datetime
    payload: dict[str, Any]


def record_ignored(session: Session, source: str, events: Sequence[IgnoredEvent]) -> int:
    """Insert ignored events once per (source, event id); how many were new."""
    if not events:
        return 0
    now = utcnow()
    rows = [
        {
            "source": source,
            "event_id": event.event_id,
            "type": event.sender_type,
            "customer_id": "",
            "occurred_at": event.occurred_at,
            "payload": event.payload,
            "status": EventStatus.IGNORED.value,
            "attempts": 0,
            "last_error": event.reason[:2000],
            "received_at": now,
            "updated_at": now,
            "handled_at": now,
        }
        for event in {e.event_id: e for e in events}.values()
    ]
    stmt = _insert_ignoring_duplicates(session, rows).returning(InboundEvent.id)
    return len(list(session.scalars(stmt)))


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


# Events that replay sends again; pending ones are already on their way (replay is idempotent).
REPLAYABLE = (EventStatus.HANDLED.value, EventStatus.FAILED.value, EventStatus.DEAD.value)


@dataclass(frozen=True)
class ReplayResult:
    found: bool
    enqueue: bool  # False when the event was already pending: nothing to send


def replay_event(session: Session, event_pk: int) -> ReplayResult:
    """Set a handled, failed or dead event pending with a fresh attempt budget.

    Two replays of the same event enqueue it once: the second finds it pending. The caller
    enqueues after its commit when `enqueue` is true. `last_error` is kept for the operator.
    """
    stmt = _replay().where(InboundEvent.id == event_pk).returning(InboundEvent.id)
    if session.scalars(stmt).first() is not None:
        return ReplayResult(found=True, enqueue=True)
    return ReplayResult(found=session.get(InboundEvent, event_pk) is not None, enqueue=False)


def replay_events(
    session: Session, statuses: Sequence[EventStatus], since: datetime | None = None
) -> list[int]:
    """Replay every event in `statuses` (received at or after `since`); the ids to enqueue."""
    wanted = [s.value for s in statuses if s.value in REPLAYABLE]
    stmt = _replay().where(InboundEvent.status.in_(wanted))
    if since is not None:
        stmt = stmt.where(InboundEvent.received_at >= since)
    return sorted(session.scalars(stmt.returning(InboundEvent.id)))


def _replay() -> Any:
    now = utcnow()
    return (
        update(InboundEvent)
        .where(InboundEvent.status.in_(REPLAYABLE))
        .values(
            status=EventStatus.PENDING.value,
            attempts=0,
            handled_at=None,
            coalesced_into=None,
            enqueued_at=now,
            sweeps=0,
            updated_at=now,
        )
    )


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


# Postgres: one fixed statement whose rows arrive as arrays. Unlike a multi-row VALUES, it
# is compiled once and prepared once, whatever the group size: at thousands of events per
# second, compiling VALUES lists cost more CPU than the database spent inserting them.
# Postgres: one fixed statement; the rows arrive as one JSON document. Unlike a multi-row
# VALUES it is compiled and prepared once whatever the group size, and unlike unnest() over
# arrays it needs no per-element escaping by the driver. Written with %(name)s placeholders
# for psycopg (the receiver's async writer uses it directly).
UNNEST_INSERT_SQL = (
    "INSERT INTO inbound_events (source, event_id, type, customer_id, occurred_at, payload,"
    " status, attempts, received_at, updated_at)"
    " SELECT u.source, u.event_id, u.type, u.customer_id, u.occurred_at, u.payload,"
    " %(status)s, 0, %(now)s, %(now)s"
    " FROM jsonb_to_recordset(%(rows)s::jsonb)"
    " AS u(source text, event_id text, type text, customer_id text,"
    " occurred_at timestamptz, payload jsonb)"
    " ON CONFLICT (source, event_id) DO NOTHING"
    " RETURNING id, source, event_id"
)
_UNNEST_INSERT = text(re.sub(r"%\((\w+)\)s", r":\1", UNNEST_INSERT_SQL).replace("::", " ::"))


def unnest_params(chunk: Sequence[tuple[str, CanonicalEvent]]) -> dict[str, Any]:
    """The parameters of UNNEST_INSERT_SQL for a chunk of (source, event) rows."""
    dumps = json.dumps
    rows = ",".join(
        f'{{"source":{dumps(source)},"event_id":{dumps(event.id)},"type":{dumps(event.type)},'
        f'"customer_id":{dumps(event.customer.id)},'
        f'"occurred_at":"{event.occurred_at.astimezone(UTC).isoformat()}",'
        f'"payload":{event.model_dump_json()}}}'
        for source, event in chunk
    )
    return {"status": EventStatus.PENDING.value, "now": utcnow(), "rows": f"[{rows}]"}


def _insert_unnest(
    session: Session, chunk: Sequence[tuple[str, CanonicalEvent]]
) -> Iterable[tuple[int, str, str]]:
    params = unnest_params(chunk)
    return [
        (pk, source, event_id) for pk, source, event_id in session.execute(_UNNEST_INSERT, params)
    ]


def _insert_values(
    session: Session, chunk: Sequence[tuple[str, CanonicalEvent]]
) -> Iterable[tuple[int, str, str]]:
    now = utcnow()
    rows = [_row(source, event, now) for source, event in chunk]
    stmt = _insert_ignoring_duplicates(session, rows)
    returning = stmt.returning(InboundEvent.id, InboundEvent.source, InboundEvent.event_id)
    return [(pk, source, event_id) for pk, source, event_id in session.execute(returning)]


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> Insert:
    conflict = [InboundEvent.source, InboundEvent.event_id]
    if session.get_bind().dialect.name == "postgresql":
        return (
            postgresql.insert(InboundEvent)
            .values(rows)
            .on_conflict_do_nothing(index_elements=conflict)
        )
    return sqlite.insert(InboundEvent).values(rows).on_conflict_do_nothing(index_elements=conflict)
