"""Reading and trimming the audit log inside the caller's session (never commits)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from worker.audit.models import AuditEntry

MAX_PAGE = 500


@dataclass(frozen=True)
class AuditFilter:
    """Every field narrows the result; None means "any". Times are inclusive/exclusive."""

    action: str | None = None
    outcome: str | None = None
    actor_kind: str | None = None
    actor_id: str | None = None
    pass_ref: str | None = None
    since: datetime | None = None  # at >= since
    until: datetime | None = None  # at < until


def list_entries(
    session: Session, filters: AuditFilter, *, limit: int = 50, before_id: int | None = None
) -> list[AuditEntry]:
    """Newest first, at most `limit` (capped at MAX_PAGE); page on with before_id=<last id>."""
    query = _filtered(select(AuditEntry), filters)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    query = query.order_by(AuditEntry.id.desc()).limit(max(1, min(limit, MAX_PAGE)))
    return list(session.scalars(query))


def _filtered(query: Select[tuple[AuditEntry]], f: AuditFilter) -> Select[tuple[AuditEntry]]:
    equal = {
        AuditEntry.action: f.action,
        AuditEntry.outcome: f.outcome,
        AuditEntry.actor_kind: f.actor_kind,
        AuditEntry.actor_id: f.actor_id,
        AuditEntry.pass_ref: f.pass_ref,
    }
    for column, value in equal.items():
        if value is not None:
            query = query.where(column == value)
    if f.since is not None:
        query = query.where(AuditEntry.at >= f.since)
    if f.until is not None:
        query = query.where(AuditEntry.at < f.until)
    return query


def delete_expired(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest rows written before `before`; returns how many."""
    oldest = (
        select(AuditEntry.id)
        .where(AuditEntry.at < before)
        .order_by(AuditEntry.id)
        .limit(limit)
        .scalar_subquery()
    )
    result = session.execute(
        delete(AuditEntry)
        .where(AuditEntry.id.in_(oldest))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
