"""Pull instead of push: each customer's passes with their status and links (read scope).

The objects are the same as in the outbound `pass.*` events (worker.sync.outbound.pass_view).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status

from worker.api.auth import ReadAccess
from worker.api.context import Context
from worker.api.params import Limit, Offset
from worker.sync.outbound import list_pass_views

router = APIRouter(prefix="/api/passes", tags=["passes"])

MAX_PASSES_PER_CUSTOMER = 500


@router.get("")
def list_passes(
    *,
    principal: ReadAccess,
    ctx: Context,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Passes by customer and pass key; only `customer_id`'s when given (possibly none)."""
    with ctx.db.session() as session:
        passes = list_pass_views(session, customer_id, limit=limit, offset=offset)
    return {"passes": passes, "limit": limit, "offset": offset}


@router.get("/{customer_id:path}")
def customer_passes(
    customer_id: Annotated[str, Path(max_length=255)], principal: ReadAccess, ctx: Context
) -> dict[str, Any]:
    """One customer's passes; 404 when passsync has none for this customer."""
    with ctx.db.session() as session:
        passes = list_pass_views(session, customer_id, limit=MAX_PASSES_PER_CUSTOMER, offset=0)
    if not passes:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no passes for this customer")
    return {"customer_id": customer_id, "passes": passes}
