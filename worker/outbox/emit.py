"""`emit`: add an outbound event to the caller's transaction (never commits, never sends).

The row commits or rolls back with the change that causes it, so an event is sent if and
only if its change happened. The edge that owns the session kicks a delivery after the
commit (see worker/tasks/outbox.py); beat's poll is the fallback.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.orm import Session

from worker.config import OUTBOUND_EVENT_TYPES
from worker.db import utcnow
from worker.outbox.models import OutboxEvent

# Set in session.info when a row was added; the edge reads it after the commit.
EMITTED_KEY = "passsync.outbox.emitted"
CAUSE_LEN = 128


def emit(
    session: Session, type: str, payload: dict[str, Any], customer_id: str, cause: str
) -> OutboxEvent:
    """Add one outbound event of `type` about `customer_id`, caused by `cause`
    (`event:<ledger id>`, `campaign:<id>`, `scan:<id>`, ...); the caller commits."""
    if type not in OUTBOUND_EVENT_TYPES:
        raise ValueError(f"unknown outbound event type {type!r}")
    row = OutboxEvent(
        webhook_id=f"msg_{uuid.uuid4().hex}",
        type=type,
        customer_id=customer_id,
        cause=cause[:CAUSE_LEN],
        payload=payload,
        created_at=utcnow(),
    )
    session.add(row)
    session.info[EMITTED_KEY] = True
    return row


def envelope(row: OutboxEvent) -> dict[str, Any]:
    """The JSON object a destination receives (see README, "Outbound events")."""
    return {
        "id": row.webhook_id,
        "type": row.type,
        "timestamp": row.created_at.isoformat(),
        "customer_id": row.customer_id,
        "cause": row.cause,
        "data": row.payload,
    }


def body_of(row: OutboxEvent) -> str:
    """The exact text that is signed and sent (the same on every attempt)."""
    return json.dumps(envelope(row), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
