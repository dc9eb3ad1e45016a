"""A failed attempt on the inbound ledger, and the dead letter that tells the CRM.

It lives over the ledger and the outbox (it writes both in one transaction), so neither of those
imports the other's caller: the `{sync, outbox, inbound}` packages form layers, not a cycle.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.status import MAX_ERROR_CHARS
from worker.outbox.causes import emit_event_failed


def record_failure(
    session: Session, event_id: int, error: str, *, final: bool, count: bool = True
) -> int:
    """Record a failed attempt (`count` adds it to the attempts): the event is `failed` (a
    retry is scheduled), or with `final` `dead` (the dead letter). Returns the attempts."""
    row = session.get(InboundEvent, event_id, with_for_update=True)
    if row is None:
        return 0  # nothing to record: the task drops the message
    if row.status in (EventStatus.HANDLED, EventStatus.DEAD):
        return row.attempts  # another delivery finished it meanwhile
    if count:
        row.attempts += 1
    row.last_error = error[:MAX_ERROR_CHARS]
    row.status = EventStatus.DEAD if final else EventStatus.FAILED
    if final:  # outbox: the CRM hears of the dead letter, in this same transaction
        emit_event_failed(session, row, row.last_error)
    return row.attempts
