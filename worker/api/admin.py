"""Admin API over the inbound ledger: list, inspect, replay (bearer token with scopes)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict

from worker.api.auth import ReadAccess, WriteAccess
from worker.api.context import Context
from worker.inbound.ledger import get_event, list_events, mark_for_replay
from worker.inbound.models import EventStatus

log = logging.getLogger("passsync.api.admin")

router = APIRouter(prefix="/api", tags=["admin"])


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    event_id: str
    type: str
    customer_id: str
    occurred_at: datetime
    status: str
    attempts: int
    last_error: str | None
    received_at: datetime
    handled_at: datetime | None


class EventDetailOut(EventOut):
    payload: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventOut]
    limit: int
    offset: int


class ReplayOut(BaseModel):
    id: int
    status: str
    enqueued: bool


@router.get("/events")
def list_ledger(
    *,
    principal: ReadAccess,
    ctx: Context,
    status_: Annotated[EventStatus | None, Query(alias="status")] = None,
    since: Annotated[datetime | None, Query(description="received at or after (UTC)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> EventPage:
    """Ledger rows, newest first."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with ctx.db.session() as session:
        rows = list_events(session, status=status_, since=since, limit=limit, offset=offset)
        events = [EventOut.model_validate(row) for row in rows]
    return EventPage(events=events, limit=limit, offset=offset)


@router.get("/events/{event_pk}")
def read_event(event_pk: int, principal: ReadAccess, ctx: Context) -> EventDetailOut:
    with ctx.db.session() as session:
        row = get_event(session, event_pk)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown event")
        return EventDetailOut.model_validate(row)


@router.post("/events/{event_pk}/replay", status_code=status.HTTP_202_ACCEPTED)
def replay_event(event_pk: int, principal: WriteAccess, ctx: Context) -> ReplayOut:
    """Set the event back to pending, commit, then enqueue it."""
    with ctx.db.session() as session:
        found = mark_for_replay(session, event_pk)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown event")
    log.info("event %d replayed by token %s", event_pk, principal.name)
    try:
        ctx.enqueue([event_pk])
    except Exception as exc:
        log.warning("enqueue failed for replayed event %d (%s)", event_pk, type(exc).__name__)
        return ReplayOut(id=event_pk, status=EventStatus.PENDING.value, enqueued=False)
    return ReplayOut(id=event_pk, status=EventStatus.PENDING.value, enqueued=True)
