"""Purge finished rows past their retention windows, in bounded batches.

Like the audit purge, this owns its transactions (it takes the Database): each batch is one
short transaction that selects at most `retention.batch_size` eligible ids, locks them
(Postgres: FOR UPDATE SKIP LOCKED, so a row a worker holds is left for the next run; SQLite:
the transaction's write lock), deletes them and commits; then it pauses
`retention.pause_seconds`, so the receiver's commits and the workers' writes get the database
in between. A crash loses only the batch in flight, rolled back whole (an outbox event never
loses part of its deliveries). A run stops after `retention.max_seconds` and says whether
rows are left for the next one.

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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, exists, func, not_, or_, select
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
        if entry.cutoff is not None:
            _purge_table(
                db, entry, entry.cutoff, settings, sleep=sleep, deadline=deadline, clock=clock
            )
    return report


def _purge_table(
    db: Database,
    entry: TableReport,
    cutoff: datetime,
    settings: RetentionSettings,
    *,
    sleep: Callable[[float], None],
    deadline: float,
    clock: Callable[[], float],
) -> None:
    batch = BATCHES[entry.table]
    while True:
        if clock() >= deadline:
            entry.done = False
            return
        with db.session() as session:
            selected, deleted = batch(session, cutoff, settings.batch_size)
        entry.batches += 1
        entry.purged += deleted
        metrics.retention_purged(entry.table, deleted)
        if selected < settings.batch_size:
            return
        sleep(settings.pause_seconds)


def _locked_ids(session: Session, query: Select[Any]) -> list[int]:
    """The ids, locked until the batch commits; rows another transaction holds are skipped."""
    return list(session.scalars(query.with_for_update(skip_locked=True)))


# -- one batch per table: (rows selected, rows deleted), in the caller's transaction -----------


def _inbound_eligible(session: Session, cutoff: datetime) -> list[ColumnElement[bool]]:
    return [
        InboundEvent.status.in_(INBOUND_FINISHED),
        InboundEvent.received_at < cutoff,
        or_(InboundEvent.handled_at.is_(None), InboundEvent.handled_at < cutoff),
        *_open_campaign_guard(session),
    ]


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


def _inbound_batch(session: Session, cutoff: datetime, limit: int) -> tuple[int, int]:
    query = select(InboundEvent.id).where(*_inbound_eligible(session, cutoff)).limit(limit)
    ids = _locked_ids(session, query)
    if ids:
        session.execute(
            delete(InboundEvent)
            .where(InboundEvent.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
    return len(ids), len(ids)


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


def _outbox_eligible(cutoff: datetime) -> list[ColumnElement[bool]]:
    return [
        OutboxEvent.fanned_out_at.is_not(None),
        OutboxEvent.fanned_out_at < cutoff,
        not_(_outbox_unfinished(cutoff)),
    ]


def _outbox_batch(session: Session, cutoff: datetime, limit: int) -> tuple[int, int]:
    query = select(OutboxEvent.id).where(*_outbox_eligible(cutoff)).limit(limit)
    ids = _locked_ids(session, query)
    if not ids:
        return 0, 0
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
    return len(ids), len(gone)


def _adoption_eligible(cutoff: datetime) -> list[ColumnElement[bool]]:
    return [AdoptionEvent.received_at < cutoff]


def _adoption_batch(session: Session, cutoff: datetime, limit: int) -> tuple[int, int]:
    ids = _locked_ids(
        session, select(AdoptionEvent.id).where(*_adoption_eligible(cutoff)).limit(limit)
    )
    if ids:
        session.execute(
            delete(AdoptionEvent)
            .where(AdoptionEvent.id.in_(ids))
            .execution_options(synchronize_session=False)
        )
    return len(ids), len(ids)


def _scans_eligible(cutoff: datetime) -> list[ColumnElement[bool]]:
    return [
        Scan.status.in_(SCANS_FINISHED),
        Scan.received_at < cutoff,
        or_(Scan.handled_at.is_(None), Scan.handled_at < cutoff),
    ]


def _scans_batch(session: Session, cutoff: datetime, limit: int) -> tuple[int, int]:
    ids = _locked_ids(session, select(Scan.id).where(*_scans_eligible(cutoff)).limit(limit))
    if ids:
        session.execute(
            delete(Scan).where(Scan.id.in_(ids)).execution_options(synchronize_session=False)
        )
    return len(ids), len(ids)


Batch = Callable[[Session, datetime, int], tuple[int, int]]
BATCHES: dict[str, Batch] = {
    "inbound": _inbound_batch,
    "outbox": _outbox_batch,
    "adoption": _adoption_batch,
    "scans": _scans_batch,
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


Eligible = Callable[[Session, datetime], list[ColumnElement[bool]]]
_COUNTED: dict[str, tuple[Any, Eligible]] = {
    "inbound": (InboundEvent, _inbound_eligible),
    "outbox": (OutboxEvent, lambda _s, cutoff: _outbox_eligible(cutoff)),
    "adoption": (AdoptionEvent, lambda _s, cutoff: _adoption_eligible(cutoff)),
    "scans": (Scan, lambda _s, cutoff: _scans_eligible(cutoff)),
}
