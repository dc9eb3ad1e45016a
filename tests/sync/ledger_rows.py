"""Writes canonical events straight into the inbound ledger, as the receiver would."""

from __future__ import annotations

from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent


def store(db: Database, event: CanonicalEvent) -> int:
    """Commit one pending ledger row for `event`; returns its id."""
    with db.session() as session:
        row = InboundEvent(
            source="crm",
            event_id=event.id,
            type=event.type,
            customer_id=event.customer.id,
            occurred_at=event.occurred_at,
            payload=event.model_dump(mode="json"),
        )
        session.add(row)
        session.flush()
        return row.id
