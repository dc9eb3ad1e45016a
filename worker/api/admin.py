"""Admin API over the inbound ledger: list, inspect, replay (bearer token with scopes).

Replay is idempotent: an event already pending is not enqueued again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict

from worker.api.auth import ReadAccess, WriteAccess
from worker.api.bodies import unprocessable
from worker.api.context import ApiContext, Context
from worker.api.params import Limit, Offset, RowId
from worker.bounds import Moment
from worker.inbound.ledger import get_event, list_events, replay_event, replay_events
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
    enqueued_at: datetime | None
    coalesced_into: int | None


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


class BulkReplayOut(BaseModel):
    replayed: list[int]
    enqueued: bool


@router.get("/events")
def list_ledger(
    *,
    principal: ReadAccess,
    ctx: Context,
    status_: Annotated[EventStatus | None, Query(alias="status")] = None,
    since: Annotated[Moment | None, Query(description="received at or after (UTC)")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> EventPage:
    """Ledger rows, newest first."""
    since = _utc(since)
    with ctx.db.session() as session:
        rows = list_events(session, status=status_, since=since, limit=limit, offset=offset)
        events = [EventOut.model_validate(row) for row in rows]
    return EventPage(events=events, limit=limit, offset=offset)


@router.get("/events/{event_pk}")
def read_event(event_pk: RowId, principal: ReadAccess, ctx: Context) -> EventDetailOut:
    with ctx.db.session() as session:
        row = get_event(session, event_pk)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown event")
        return EventDetailOut.model_validate(row)


# Declared before /events/{event_pk}/replay so "replay" is never read as an event id.
@router.post("/events/replay", status_code=status.HTTP_202_ACCEPTED)
def replay_many(
    *,
    principal: WriteAccess,
    ctx: Context,
    dead: Annotated[bool, Query(description="replay every dead event")] = False,
    since: Annotated[Moment | None, Query(description="received at or after (UTC)")] = None,
) -> BulkReplayOut:
    """Replay dead events (`dead=true`), or dead and failed ones received since `since`."""
    if not dead and since is None:
        unprocessable(["query", "dead"], "give dead=true or since")
    statuses = [EventStatus.DEAD] if dead else [EventStatus.DEAD, EventStatus.FAILED]
    with ctx.db.session() as session:
        ids = replay_events(session, statuses, since=_utc(since))
    log.info("%d events replayed by token %s", len(ids), principal.name)
    return BulkReplayOut(replayed=ids, enqueued=_enqueue(ctx, ids))


@router.post("/events/{event_pk}/replay", status_code=status.HTTP_202_ACCEPTED)
def replay_one(event_pk: RowId, principal: WriteAccess, ctx: Context) -> ReplayOut:
    """Set the event back to pending, commit, then enqueue it (not if it already was pending)."""
    with ctx.db.session() as session:
        replay = replay_event(session, event_pk)
    if not replay.found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown event")
    if not replay.enqueue:
        return ReplayOut(id=event_pk, status=EventStatus.PENDING.value, enqueued=False)
    log.info("event %d replayed by token %s", event_pk, principal.name)
    enqueued = _enqueue(ctx, [event_pk])
    return ReplayOut(id=event_pk, status=EventStatus.PENDING.value, enqueued=enqueued)


def _enqueue(ctx: ApiContext, ids: list[int]) -> bool:
    """Publish after the commit; on failure the events stay pending for the sweeper."""
    if not ids:
        return False
    try:
        ctx.enqueue(ids)
    except Exception as exc:
        log.warning("enqueue failed for %d replayed events (%s)", len(ids), type(exc).__name__)
        return False
    return True


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment
