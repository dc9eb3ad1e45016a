"""The cause every outbound payload carries, and `event.failed` (the dead letter's event).

The outbox sits under the sync engine and over the inbound ledger: it reads an inbound event,
never a pass mapping (the pass events are built in worker.sync.outbound).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from worker.inbound.models import InboundEvent
from worker.outbox.emit import emit
from worker.outbox.models import OutboxEvent

CAMPAIGN_SOURCE = "campaign"  # campaign recipients' ledger ids are "<campaign>:<recipient>:1"


def cause_of(event: InboundEvent) -> tuple[str, dict[str, Any]]:
    """The cause label and the inbound event reference every payload carries."""
    ref: dict[str, Any] = {
        "ledger_id": event.id,
        "source": event.source,
        "id": event.event_id,
        "type": event.type,
    }
    if event.source == CAMPAIGN_SOURCE and ":" in event.event_id:
        campaign = event.event_id.split(":", 1)[0]
        ref["campaign_id"] = campaign
        return f"campaign:{campaign}", ref
    return f"event:{event.id}", ref


def emit_event_failed(session: Session, event: InboundEvent, reason: str) -> OutboxEvent:
    """`event.failed`: an inbound event went to the dead letter (in the same transaction)."""
    cause, ref = cause_of(event)
    payload = {"event": ref, "reason": reason, "attempts": event.attempts}
    return emit(session, "event.failed", payload, event.customer_id, cause)
