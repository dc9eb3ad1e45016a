"""Purge finished rows past their retention windows, in bounded batches.

Like the audit purge, this owns its transactions (it takes the Database): each batch is one
short transaction, one DELETE of at most `retention.batch_size` eligible rows taken in order
along the table's time index and locked first (Postgres: FOR UPDATE SKIP LOCKED, so a row a
worker holds is left for the next run; SQLite: the transaction's write lock). Each batch
starts after the (time, id) of the last row the one before took (keyset order), so it reads
one index range and never the dead entries of the ranges already purged. The purge paces
itself from its own cost: after a batch that took t it pauses t * (1 - d) / d, d being
`retention.duty_cycle`, and never less than `retention.pause_seconds`, so the receiver's
commits and the workers' writes get the database in between whatever the machine's load.
On Postgres a batch never queues for a lock nor runs long (lock and statement timeouts: it is
rolled back and the rest waits for the next run). A crash loses only the batch in flight,
rolled back whole (an outbox event never loses part of its deliveries). A run stops after
`retention.max_seconds` and says whether rows are left for the next one.

Eligible, per table (never a row still in flight):

- inbound: events handled or ignored, received and handled before the cutoff. Never a
  pending, failed or dead event, nor an event of a campaign that has not ended (a requeued
  recipient may still read its ledger row).
- outbox: events fanned out before the cutoff whose every delivery was delivered before the
  cutoff; their deliveries and attempt log go with them. Never a pending, sending or failed
  delivery (nor its event).
- adoption: provider callbacks received before the cutoff (the funnel's counters live in
  pass_adoption, which is kept).
- scans: accepted, rejected or unknown scans received and handled before the cutoff (usage
  counters live in pass_usage, which is kept). Never a pending, applying or failed scan.

Dedup trade-off: the inbound ledger, the adoption ledger and the scans answer a resent id as a
duplicate only while its row exists. A purged event resent later is stored again, and the
engine then finds every pass it touches already at that event or newer (pass_mappings keep
the last applied event, and are never purged): it is handled as stale, with no provider call.
A purged callback or scan resent later is counted again. So their windows are at least
RETENTION_MIN_DEDUP_DAYS, beyond the retry horizon of the senders we know (README,
"Retention").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, exists, func, not_, or_, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from worker.adoption.models import AdoptionEvent
from worker.campaigns.models import FINAL, Campaign
from worker.config import RetentionSettings
from worker.db import Database, utcnow
from worker.inbound.models import EventStatus, InboundEvent
from worker.observability import metrics
from worker.outbox.models import DeliveryStatus, OutboxAttempt, OutboxDelivery, OutboxEvent
from worker.scans.models import Scan, ScanStatus

TABLES = ("inbound", "outbox", "adoption", "scans")

log = logging.getLogger("passsync.retention")

# Postgres bounds on every batch: it never queues for a lock (the rows it takes are SKIP
# LOCKED; this is for a table lock, say a migration's) and never runs long; either way it is
# rolled back whole and the rest waits for the next run.
LOCK_TIMEOUT_MS = 200
STATEMENT_TIMEOUT_MS = 5_000
# A batch's commit does not wait for its WAL to reach the disk (bench.retention --sync-commit
# measures the other way).
SYNCHRONOUS_COMMIT = "off"

# The ledger source of campaign recipients' events (worker.campaigns.runner.SOURCE), whose
# event ids start with "<campaign id>:".
CAMPAIGN_SOURCE = "campaign"
# Above this many campaigns not yet ended, every campaign event is kept (one LIKE each).
MAX_OPEN_CAMPAIGN_GUARDS = 50

INBOUND_FINISHED = (EventStatus.HANDLED.value, EventStatus.IGNORED.value)
SCANS_FINISHED = (ScanStatus.ACCEPTED.value, ScanStatus.REJECTED.value, ScanStatus.UNKNOWN.value)


def window_days(settings: RetentionSettings, table: str) -> int:
    """The table's window in days (0: kept forever)."""
    days: int = getattr(settings, f"{table}_days")
    return days


def cutoff_for(settings: RetentionSettings, table: str, now: datetime) -> datetime | None:
    """Rows finished before this time are purged; None when the table is kept forever."""
    days = window_days(settings, table)
    return None if days <= 0 else now - timedelta(days=days)


@dataclass
class TableReport:
    table: str
    days: int
    cutoff: datetime | None
    purged: int = 0
    batches: int = 0
    done: bool = True  # False: the run's time was up with eligible rows left

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "days": self.days,
            "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
            "purged": self.purged,
            "batches": self.batches,
            "done": self.done,
        }


@dataclass
class RetentionReport:
    tables: list[TableReport] = field(default_factory=list)

    @property
    def purged(self) -> int:
        return sum(t.purged for t in self.tables)

    @property
    def done(self) -> bool:
        return all(t.done for t in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {
            "purged": self.purged,
            "done": self.done,
            "tables": [t.as_dict() for t in self.tables],
        }


def run_retention(
    db: Database,
    settings: RetentionSettings,
    *,
    tables: Sequence[str] = TABLES,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RetentionReport:
    """Purge every table in `tables` past its window, batch by batch, within
    `settings.max_seconds`; what was purged and whether rows are left."""
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown retention table(s) {', '.join(unknown)}: one of {TABLES}")
    now = now or utcnow()
    deadline = clock() + settings.max_seconds
    report = RetentionReport()
    for table in tables:
        entry = TableReport(table, window_days(settings, table), cutoff_for(settings, table, now))
        report.tables.append(entry)
        if entry.cutoff is None:
            continue
        for walk in WALKS[table]:
            if not _purge_walk(
                db, walk, entry, entry.cutoff, settings, sleep=sleep, deadline=deadline, clock=clock
            ):
                entry.done = False
                break
    return report


def pause_after(batch_seconds: float, settings: RetentionSettings) -> float:
    """The pause after a batch that took `batch_seconds`: long enough that batches take at most
    `duty_cycle` of the wall time, never shorter than `pause_seconds`."""
    duty = settings.duty_cycle
    return max(settings.pause_seconds, batch_seconds * (1.0 - duty) / duty)


def _purge_walk(
    db: Database,
    walk: Walk,
    entry: TableReport,
    cutoff: datetime,
    settings: RetentionSettings,
    *,
    sleep: Callable[[float], None],
    deadline: float,
    clock: Callable[[], float],
) -> bool:
    """Walk one index range oldest first, batch after batch; False when the run's time ran out
    (or a batch hit a timeout) with the range not yet walked to its end."""
    after: Position | None = None
    # Once per walk: an event of a campaign that opens meanwhile is too new to be eligible.
    with db.session() as session:
        where = walk.eligible(session, cutoff)
    while True:
        started = clock()
        if started >= deadline:
            return False
        try:
            with db.session() as session:
                _bound(session)
                found = walk.batch(session, where, cutoff, settings.batch_size, after)
        except OperationalError as exc:
            if not _timed_out(exc):
                raise
            # Rolled back whole: the rest waits for the next run rather than queueing here.
            log.warning("retention: a %s batch timed out (%s); the rest waits", entry.table, exc)
            return False
        entry.batches += 1 if found.selected else 0
        entry.purged += found.deleted
        metrics.retention_purged(entry.table, found.deleted)
        if found.selected < settings.batch_size or found.last is None:
            return True
        after = found.last
        sleep(pause_after(clock() - started, settings))


def _bound(session: Session) -> None:
    """Postgres: a batch never waits long for a lock nor runs long, and its commit does not
    wait for the WAL flush (a batch lost in a crash is purged again by the next run)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text(
            "SELECT set_config('lock_timeout', :lock, true),"
            " set_config('statement_timeout', :statement, true),"
            " set_config('synchronous_commit', :commit, true)"
        ),
        {
            "lock": f"{LOCK_TIMEOUT_MS}ms",
            "statement": f"{STATEMENT_TIMEOUT_MS}ms",
            "commit": SYNCHRONOUS_COMMIT,
        },
    )


def _timed_out(exc: OperationalError) -> bool:
    """Postgres cancelled the statement (statement_timeout) or gave up on a lock."""
    return getattr(exc.orig, "sqlstate", None) in {"57014", "55P03"}


# -- one batch: the next index range of a walk, in the caller's transaction --------------------

Position = tuple[datetime, int]  # (the walk's time column, id) of the last row a batch took


@dataclass(frozen=True)
class Found:
    selected: int  # rows the batch took from the range (locked ones are skipped)
    deleted: int
    last: Position | None  # where the next batch starts (after this row)


Eligible = Callable[[Session, datetime], list[ColumnElement[bool]]]


@dataclass(frozen=True)
class Walk:
    """The eligible rows of one table, oldest first along an index on (`where`'s equality
    columns, `at`): each batch starts where the last one stopped, so it reads one index range
    and never the dead entries of the ranges before it."""

    model: Any
    at: Any  # the time column the index orders by
    eligible: Eligible
    delete_batch: Callable[[Session, Walk, Select[Any], datetime], Found] | None = None

    def batch(
        self,
        session: Session,
        where: list[ColumnElement[bool]],
        cutoff: datetime,
        limit: int,
        after: Position | None,
    ) -> Found:
        query = select(self.model.id, self.at).where(*where)
        if after is not None:
            at, row_id = after
            query = query.where(self.at >= at, or_(self.at > at, self.model.id > row_id))
        query = query.order_by(self.at, self.model.id).limit(limit)
        query = query.with_for_update(skip_locked=True)
        if self.delete_batch is not None:
            return self.delete_batch(session, self, query, cutoff)
        return _delete_rows(session, self, query)


def _delete_rows(session: Session, walk: Walk, query: Select[Any]) -> Found:
    """One statement: delete the rows the query locks, returning where they were."""
    ids = query.with_only_columns(walk.model.id).correlate(None).scalar_subquery()
    # Postgres: `= ANY(ARRAY(...))` takes the ids first (an init plan) and then finds each by
    # its primary key; `IN (...)` may be planned as a hash join over a scan of the table.
    postgres = session.get_bind().dialect.name == "postgresql"
    which = walk.model.id == func.any(func.array(ids)) if postgres else walk.model.id.in_(ids)
    gone = session.execute(
        delete(walk.model)
        .where(which)
        .returning(walk.at, walk.model.id)
        .execution_options(synchronize_session=False)
    ).all()
    last = max(((at, row_id) for at, row_id in gone), default=None)
    return Found(len(gone), len(gone), last)


def _inbound_eligible(statuses: Sequence[str]) -> Eligible:
    def eligible(session: Session, cutoff: datetime) -> list[ColumnElement[bool]]:
        return [
            InboundEvent.status.in_(statuses),
            InboundEvent.received_at < cutoff,
            or_(InboundEvent.handled_at.is_(None), InboundEvent.handled_at < cutoff),
            *_open_campaign_guard(session),
        ]

    return eligible


def _open_campaign_guard(session: Session) -> list[ColumnElement[bool]]:
    """Keep the ledger rows of campaigns that have not ended."""
    open_ids = list(
        session.scalars(
            select(Campaign.id)
            .where(Campaign.status.not_in([s.value for s in FINAL]))
            .limit(MAX_OPEN_CAMPAIGN_GUARDS + 1)
        )
    )
    if not open_ids:
        return []
    if len(open_ids) > MAX_OPEN_CAMPAIGN_GUARDS:
        return [InboundEvent.source != CAMPAIGN_SOURCE]
    return [
        not_(
            and_(
                InboundEvent.source == CAMPAIGN_SOURCE,
                InboundEvent.event_id.like(f"{campaign_id}:%"),
            )
        )
        for campaign_id in open_ids
    ]


def _outbox_unfinished(cutoff: datetime) -> ColumnElement[bool]:
    """A delivery of the event that is not delivered, or delivered within the window."""
    return exists().where(
        OutboxDelivery.outbox_event_id == OutboxEvent.id,
        or_(
            OutboxDelivery.status != DeliveryStatus.DELIVERED.value,
            OutboxDelivery.delivered_at.is_(None),
            OutboxDelivery.delivered_at >= cutoff,
        ),
    )


def _outbox_eligible(_session: Session, cutoff: datetime) -> list[ColumnElement[bool]]:
    return [
        OutboxEvent.fanned_out_at.is_not(None),
        OutboxEvent.fanned_out_at < cutoff,
        not_(_outbox_unfinished(cutoff)),
    ]


def _outbox_delete(session: Session, _walk: Walk, query: Select[Any], cutoff: datetime) -> Found:
    """Outbox events go with their deliveries and attempt log, once each is locked and
    checked again."""
    rows = session.execute(query).all()
    if not rows:
        return Found(0, 0, None)
    ids = [row_id for row_id, _at in rows]
    last = max((at, row_id) for row_id, at in rows)
    # Lock their deliveries and look again: a redelivery may have reset one meanwhile.
    deliveries = session.execute(
        select(OutboxDelivery.outbox_event_id, OutboxDelivery.status, OutboxDelivery.delivered_at)
        .where(OutboxDelivery.outbox_event_id.in_(ids))
        .with_for_update()
    ).all()
    busy = {
        event_id
        for event_id, status, delivered_at in deliveries
        if status != DeliveryStatus.DELIVERED or delivered_at is None or delivered_at >= cutoff
    }
    gone = [i for i in ids if i not in busy]
    if gone:
        of_events = select(OutboxDelivery.id).where(OutboxDelivery.outbox_event_id.in_(gone))
        for statement in (
            delete(OutboxAttempt).where(OutboxAttempt.delivery_id.in_(of_events)),
            delete(OutboxDelivery).where(OutboxDelivery.outbox_event_id.in_(gone)),
            delete(OutboxEvent).where(OutboxEvent.id.in_(gone)),
        ):
            session.execute(statement.execution_options(synchronize_session=False))
    return Found(len(ids), len(gone), last)


def _adoption_eligible(_session: Session, cutoff: datetime) -> list[ColumnElement[bool]]:
    return [AdoptionEvent.received_at < cutoff]


def _scans_eligible(statuses: Sequence[str]) -> Eligible:
    def eligible(_session: Session, cutoff: datetime) -> list[ColumnElement[bool]]:
        return [
            Scan.status.in_(statuses),
            Scan.received_at < cutoff,
            or_(Scan.handled_at.is_(None), Scan.handled_at < cutoff),
        ]

    return eligible


# Each table's walks: one per finished status where the index leads with the status.
WALKS: dict[str, tuple[Walk, ...]] = {
    "inbound": tuple(
        Walk(InboundEvent, InboundEvent.received_at, _inbound_eligible([s]))
        for s in INBOUND_FINISHED
    ),
    "outbox": (Walk(OutboxEvent, OutboxEvent.fanned_out_at, _outbox_eligible, _outbox_delete),),
    "adoption": (Walk(AdoptionEvent, AdoptionEvent.received_at, _adoption_eligible),),
    "scans": tuple(Walk(Scan, Scan.received_at, _scans_eligible([s])) for s in SCANS_FINISHED),
}


# -- status -----------------------------------------------------------------------------------


def retention_status(
    session: Session, settings: RetentionSettings, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Per table: its window, the cutoff, the rows it holds and how many a purge would
    delete now."""
    now = now or utcnow()
    found = []
    for table in TABLES:
        cutoff = cutoff_for(settings, table, now)
        model, eligible = _COUNTED[table]
        rows = int(session.scalar(select(func.count()).select_from(model)) or 0)
        purgeable = 0
        if cutoff is not None:
            conditions = eligible(session, cutoff)
            purgeable = int(
                session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0
            )
        found.append(
            {
                "table": table,
                "days": window_days(settings, table),
                "cutoff": None if cutoff is None else cutoff.isoformat(),
                "rows": rows,
                "purgeable": purgeable,
            }
        )
    return found


_COUNTED: dict[str, tuple[Any, Eligible]] = {
    "inbound": (InboundEvent, _inbound_eligible(INBOUND_FINISHED)),
    "outbox": (OutboxEvent, _outbox_eligible),
    "adoption": (AdoptionEvent, _adoption_eligible),
    "scans": (Scan, _scans_eligible(SCANS_FINISHED)),
}
