"""Admin API over the audit log of provider calls: filtered, newest first, keyset paging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict

from worker.api.auth import ReadAccess
from worker.api.context import Context
from worker.audit import MAX_PAGE, AuditFilter, list_entries
from worker.audit.actor import ActorKind
from worker.audit.stats import call_stats, parse_since
from worker.bounds import INT64_MAX, Moment

router = APIRouter(prefix="/api", tags=["audit"])


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    provider: str
    action: str
    method: str
    path: str
    pass_ref: str | None
    status: int | None
    duration_ms: float
    attempt: int
    outcome: str
    actor_kind: str
    actor_id: str


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    limit: int
    # Pass as `before` for the next (older) page; null on the last page.
    next_before: int | None


Text = Annotated[str | None, Query(max_length=255)]


@router.get("/audit")
def list_audit(
    *,
    principal: ReadAccess,
    ctx: Context,
    action: Text = None,
    outcome: Text = None,
    actor_kind: Annotated[ActorKind | None, Query()] = None,
    actor_id: Text = None,
    pass_ref: Text = None,
    since: Annotated[Moment | None, Query(description="at or after (UTC)")] = None,
    until: Annotated[Moment | None, Query(description="before (UTC)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=INT64_MAX, description="ids below this (paging)")
    ] = None,
) -> AuditPage:
    """Audit rows, newest first; follow `next_before` for older pages."""
    filters = AuditFilter(
        action=action,
        outcome=outcome,
        actor_kind=actor_kind,
        actor_id=actor_id,
        pass_ref=pass_ref,
        since=_utc(since),
        until=_utc(until),
    )
    with ctx.db.session() as session:
        rows = list_entries(session, filters, limit=limit, before_id=before)
        entries = [AuditEntryOut.model_validate(row) for row in rows]
    next_before = entries[-1].id if len(entries) == limit else None
    return AuditPage(entries=entries, limit=limit, next_before=next_before)


class ActionStatsOut(BaseModel):
    account: str
    action: str
    calls: int
    success_rate: float | None
    errors: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None


class AuditStats(BaseModel):
    since: datetime
    actions: list[ActionStatsOut]


@router.get("/audit/stats")
def audit_stats(
    *,
    principal: ReadAccess,
    ctx: Context,
    since: Annotated[
        str, Query(max_length=40, description="24h, 7d, 30m, 90s, or an ISO time (UTC)")
    ] = "24h",
    account: Text = None,
) -> AuditStats:
    """Per account and action: attempts, success rate, error classes, p50/p99 latency."""
    try:
        start = parse_since(since)
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "since: use 24h, 7d, 30m, 90s or an ISO time"
        ) from None
    with ctx.db.session() as session:
        rows = call_stats(session, since=start, account=account)
    return AuditStats(
        since=start, actions=[ActionStatsOut.model_validate(r.as_dict()) for r in rows]
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
