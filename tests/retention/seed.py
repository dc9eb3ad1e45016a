"""Rows of every kind the purge looks at, old and new, finished and not, with exact times."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from worker.adoption.models import AdoptionEvent
from worker.campaigns.models import Campaign, CampaignStatus
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.outbox.models import OutboxAttempt, OutboxDelivery, OutboxEvent
from worker.scans.models import Scan

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)  # past every default window? inbound/outbox 30 d: yes
ANCIENT = NOW - timedelta(days=200)  # past the 90-day adoption and scan windows too
RECENT = NOW - timedelta(days=1)


@dataclass
class Seeded:
    """Ledger ids by what the purge must do with them."""

    inbound_gone: set[int] = field(default_factory=set)
    inbound_kept: set[int] = field(default_factory=set)
    outbox_gone: set[int] = field(default_factory=set)
    outbox_kept: set[int] = field(default_factory=set)
    adoption_gone: set[int] = field(default_factory=set)
    adoption_kept: set[int] = field(default_factory=set)
    scans_gone: set[int] = field(default_factory=set)
    scans_kept: set[int] = field(default_factory=set)


def inbound(
    db: Database,
    *,
    status: str,
    received: datetime,
    handled: datetime | None = None,
    source: str = "crm",
    event_id: str | None = None,
) -> int:
    with db.session() as session:
        row = InboundEvent(
            source=source,
            event_id=event_id or f"e-{uuid.uuid4().hex[:12]}",
            type="customer.updated",
            customer_id="c1",
            occurred_at=received,
            payload={},
            status=status,
            received_at=received,
            updated_at=handled or received,
            handled_at=handled,
        )
        session.add(row)
        session.flush()
        return row.id


def outbox(
    db: Database, *, fanned: datetime | None, deliveries: list[tuple[str, datetime | None]]
) -> int:
    """An outbox event with one delivery per (status, delivered_at), each with one attempt."""
    with db.session() as session:
        event = OutboxEvent(
            webhook_id=f"msg_{uuid.uuid4().hex}",
            type="pass.issued",
            customer_id="c1",
            cause="event:1",
            payload={},
            created_at=fanned or RECENT,
            fanned_out_at=fanned,
        )
        session.add(event)
        session.flush()
        for n, (status, delivered) in enumerate(deliveries):
            delivery = OutboxDelivery(
                outbox_event_id=event.id,
                destination=f"d{n}",
                customer_id="c1",
                status=status,
                attempts=1,
                delivered_at=delivered,
            )
            session.add(delivery)
            session.flush()
            session.add(
                OutboxAttempt(
                    delivery_id=delivery.id,
                    attempt=1,
                    started_at=delivered or OLD,
                    duration_ms=5,
                    outcome="delivered" if status == "delivered" else "retry",
                )
            )
        return event.id


def adoption(db: Database, *, received: datetime) -> int:
    with db.session() as session:
        row = AdoptionEvent(
            provider="passcreator",
            callback_id=f"cb-{uuid.uuid4().hex[:12]}",
            kind="installed",
            provider_pass_id="p1",
            occurred_at=received,
            payload={},
            received_at=received,
        )
        session.add(row)
        session.flush()
        return row.id


def scan(db: Database, *, status: str, received: datetime, handled: datetime | None) -> int:
    with db.session() as session:
        row = Scan(
            source="pos",
            scan_id=f"s-{uuid.uuid4().hex[:12]}",
            scanned_at=received,
            status=status,
            received_at=received,
            handled_at=handled,
        )
        session.add(row)
        session.flush()
        return row.id


def campaign(db: Database, status: CampaignStatus) -> int:
    with db.session() as session:
        row = Campaign(name="c", status=status.value, event_type="customer.updated")
        session.add(row)
        session.flush()
        return row.id


def everything(db: Database) -> Seeded:
    """One of each case, past and within the default windows."""
    s = Seeded()
    # inbound (30 days)
    for status in ("handled", "ignored"):
        s.inbound_gone.add(inbound(db, status=status, received=OLD, handled=OLD))
        s.inbound_kept.add(inbound(db, status=status, received=RECENT, handled=RECENT))
    for status in ("pending", "failed", "dead"):
        s.inbound_kept.add(inbound(db, status=status, received=ANCIENT))
    # received long ago, handled (replayed) yesterday: its window starts again
    s.inbound_kept.add(inbound(db, status="handled", received=OLD, handled=RECENT))
    running = campaign(db, CampaignStatus.RUNNING)
    done = campaign(db, CampaignStatus.COMPLETED)
    s.inbound_kept.add(
        inbound(
            db,
            status="handled",
            received=OLD,
            handled=OLD,
            source="campaign",
            event_id=f"{running}:7:1",
        )
    )
    s.inbound_gone.add(
        inbound(
            db,
            status="handled",
            received=OLD,
            handled=OLD,
            source="campaign",
            event_id=f"{done}:7:1",
        )
    )
    # outbox (30 days)
    s.outbox_gone.add(outbox(db, fanned=OLD, deliveries=[("delivered", OLD), ("delivered", OLD)]))
    s.outbox_gone.add(outbox(db, fanned=OLD, deliveries=[]))  # no destination wanted it
    s.outbox_kept.add(outbox(db, fanned=OLD, deliveries=[("delivered", OLD), ("pending", None)]))
    s.outbox_kept.add(outbox(db, fanned=OLD, deliveries=[("failed", None)]))
    s.outbox_kept.add(outbox(db, fanned=OLD, deliveries=[("sending", None)]))
    s.outbox_kept.add(outbox(db, fanned=OLD, deliveries=[("delivered", RECENT)]))
    s.outbox_kept.add(outbox(db, fanned=RECENT, deliveries=[("delivered", RECENT)]))
    s.outbox_kept.add(outbox(db, fanned=None, deliveries=[]))  # not fanned out yet
    # adoption (90 days)
    s.adoption_gone.add(adoption(db, received=ANCIENT))
    s.adoption_kept.add(adoption(db, received=OLD))
    # scans (90 days)
    for status in ("accepted", "rejected", "unknown"):
        s.scans_gone.add(scan(db, status=status, received=ANCIENT, handled=ANCIENT))
        s.scans_kept.add(scan(db, status=status, received=OLD, handled=OLD))
    for status in ("pending", "applying", "failed"):
        s.scans_kept.add(scan(db, status=status, received=ANCIENT, handled=None))
    return s
