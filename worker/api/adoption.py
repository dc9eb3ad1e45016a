"""GET /api/adoption: the adoption funnel as JSON (read scope), with filters."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from worker.adoption.metrics import Filters, adoption_report
from worker.api.auth import ReadAccess
from worker.api.context import Context
from worker.bounds import INT64_MAX

router = APIRouter(prefix="/api/adoption", tags=["adoption"])

Text = Annotated[str | None, Query(min_length=1, max_length=255)]


@router.get("")
def adoption(
    *,
    principal: ReadAccess,
    ctx: Context,
    template: Text = None,
    pass_key: Text = None,
    campaign: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    platform: Text = None,
    since: date | None = None,
    until: date | None = None,
) -> dict[str, Any]:
    """Funnel counts and rates, time to install, platform split, daily series, locations."""
    filters = Filters(template, pass_key, campaign, platform, since, until)
    with ctx.db.session() as session:
        return adoption_report(session, None, filters)
