"""Admin API over the outbox: deliveries and destinations, one event's log, redelivery."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status

from worker.api.auth import ReadAccess, WriteAccess
from worker.api.bodies import unprocessable
from worker.api.context import Context
from worker.api.params import Limit, Name, Offset, RowId
from worker.config import OUTBOUND_EVENT_TYPES
from worker.db import utcnow
from worker.outbox.admin import (
    DeliveryFilter,
    destination_states,
    list_deliveries,
    redeliver_destination,
    redeliver_event,
    show_event,
)
from worker.outbox.models import DeliveryStatus

log = logging.getLogger("passsync.api.outbox")

router = APIRouter(prefix="/api/outbox", tags=["outbox"])


@router.get("")
def list_outbox(
    *,
    principal: ReadAccess,
    ctx: Context,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    destination: Name = None,
    type_: Annotated[str | None, Query(alias="type", max_length=64)] = None,
    customer_id: Name = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Deliveries, newest event first, and every destination's state (disabled after a 410)."""
    if type_ is not None and type_ not in OUTBOUND_EVENT_TYPES:
        unprocessable(["query", "type"], "unknown outbound event type")
    where = DeliveryFilter(status_, destination, type_, customer_id)
    with ctx.db.session() as session:
        deliveries = list_deliveries(session, where, limit=limit, offset=offset)
        states = destination_states(session, ctx.settings.outbound.destinations)
    return {"deliveries": deliveries, "destinations": states, "limit": limit, "offset": offset}


@router.get("/{event_id}")
def read_outbox_event(event_id: RowId, principal: ReadAccess, ctx: Context) -> dict[str, Any]:
    """One outbound event: the envelope, its deliveries and each one's attempt log."""
    with ctx.db.session() as session:
        found = show_event(session, event_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown outbound event")
    return found


@router.post("/destinations/{name}/redeliver", status_code=status.HTTP_202_ACCEPTED)
def redeliver_to(
    name: Annotated[str, Path(max_length=255)], principal: WriteAccess, ctx: Context
) -> dict[str, Any]:
    """Re-enable a destination (after a 410) and give its failed deliveries a new schedule."""
    if name not in ctx.settings.outbound.destinations:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown destination")
    with ctx.db.session() as session:
        enabled, count = redeliver_destination(session, name, utcnow())
    log.info("destination %s redelivered by token %s", name, principal.name)
    return {"destination": name, "re_enabled": enabled, "pending": count}


@router.post("/{event_id}/redeliver", status_code=status.HTTP_202_ACCEPTED)
def redeliver(
    event_id: RowId, principal: WriteAccess, ctx: Context, destination: Name = None
) -> dict[str, Any]:
    """Send an event again (same webhook-id) with a fresh schedule; beat delivers it."""
    destinations = ctx.settings.outbound.destinations
    if destination is not None and destination not in destinations:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown destination")
    wanted = {name: dest.event_types for name, dest in destinations.items()}
    with ctx.db.session() as session:
        ids = redeliver_event(session, event_id, wanted, destination=destination, now=utcnow())
    if ids is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown outbound event")
    log.info("outbound event %d redelivered by token %s", event_id, principal.name)
    return {"event": event_id, "deliveries": ids}
