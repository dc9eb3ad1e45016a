"""Scans as recorded, for people: filtered and paged lists, one scan with its effect and the
outcome of applying it (read-only; the edge owns the session)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from worker.scans.models import Scan, ScanStatus


@dataclass(frozen=True)
class ScanFilter:
    """Every field given narrows the list; None leaves it open."""

    status: ScanStatus | None = None
    source: str | None = None
    customer_id: str | None = None
    pass_key: str | None = None
    location: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_scans(
    session: Session, where: ScanFilter, *, limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    """Scans, newest first (by id), as dictionaries ready for JSON."""
    query = _filtered(select(Scan), where).order_by(Scan.id.desc()).limit(limit).offset(offset)
    return [as_dict(row) for row in session.scalars(query)]


def get_scan(session: Session, scan_pk: int) -> dict[str, Any] | None:
    """One scan with its attributes, or None."""
    row = session.get(Scan, scan_pk)
    return None if row is None else as_dict(row) | {"attributes": row.attributes}


def _filtered(query: Select[Any], where: ScanFilter) -> Select[Any]:
    exact = {
        Scan.status: where.status,
        Scan.source: where.source,
        Scan.customer_id: where.customer_id,
        Scan.pass_key: where.pass_key,
        Scan.location: where.location,
    }
    for column, value in exact.items():
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(Scan.scanned_at >= where.since)
    if where.until is not None:
        query = query.where(Scan.scanned_at < where.until)
    return query


def outcome(row: Scan) -> str:
    """The scan's outcome in words: what happened, and why when nothing did."""
    status = ScanStatus(row.status)
    if status in (ScanStatus.PENDING, ScanStatus.APPLYING):
        return f"{status.value}: not applied yet"
    if status == ScanStatus.ACCEPTED:
        return "applied" + (f": {describe_effect(row.effect)}" if row.effect else "")
    return f"{status.value}: {row.reason}" if row.reason else status.value


def describe_effect(effect: dict[str, Any] | None) -> str:
    """`void`, `fields visits=3, points=12.5`, `push "..."`, or `nothing to change`."""
    if not effect:
        return "nothing to change"
    parts = []
    if effect.get("void"):
        parts.append("void the pass")
    fields = effect.get("fields") or {}
    if fields:
        parts.append("set " + ", ".join(f"{k}={v}" for k, v in fields.items()))
    if effect.get("push"):
        parts.append(f"push {effect['push']!r}")
    return "; ".join(parts) or "nothing to change"


def as_dict(row: Scan) -> dict[str, Any]:
    """The scan row (without attributes), its effect and outcome."""
    return {
        "id": row.id,
        "source": row.source,
        "scan_id": row.scan_id,
        "scanned_at": row.scanned_at.isoformat(),
        "barcode": row.barcode,
        "provider_pass_id": row.provider_pass_id,
        "customer_id": row.customer_id,
        "pass_key": row.pass_key,
        "location": row.location,
        "amount": row.amount,
        "status": row.status,
        "reason": row.reason,
        "effect": row.effect,
        "outcome": outcome(row),
        "received_at": row.received_at.isoformat(),
        "handled_at": None if row.handled_at is None else row.handled_at.isoformat(),
    }
