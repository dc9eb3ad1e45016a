"""GET /api/scans and /api/scans/{id}: the scans ledger for operators (read scope)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from worker.api.auth import ReadAccess
from worker.api.context import Context
from worker.api.params import Limit, Name, Offset, RowId
from worker.bounds import Moment
from worker.scans.listing import ScanFilter, get_scan, list_scans
from worker.scans.models import ScanStatus

router = APIRouter(prefix="/api/scans", tags=["scans"])


@router.get("")
def list_scans_api(
    *,
    principal: ReadAccess,
    ctx: Context,
    status_: Annotated[ScanStatus | None, Query(alias="status")] = None,
    source: Name = None,
    customer_id: Name = None,
    pass_key: Name = None,
    location: Name = None,
    since: Moment | None = None,
    until: Moment | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Scans, newest first, each with its effect and outcome; filters narrow, limit/offset page."""
    where = ScanFilter(status_, source, customer_id, pass_key, location, since, until)
    with ctx.db.session() as session:
        found = list_scans(session, where, limit=limit, offset=offset)
    return {"scans": found, "limit": limit, "offset": offset}


@router.get("/{scan_pk}")
def read_scan(scan_pk: RowId, principal: ReadAccess, ctx: Context) -> dict[str, Any]:
    """One scan: what was scanned, its effect, the outcome and its attributes."""
    with ctx.db.session() as session:
        found = get_scan(session, scan_pk)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown scan")
    return found
