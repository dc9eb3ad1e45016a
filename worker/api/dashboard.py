"""GET /dashboard: the adoption dashboard as one HTML page of server-drawn SVG charts.

Works offline (no script, no CDN). A browser authenticates with `?token=<read token>` once;
the answer sets an HttpOnly cookie (a read-only session) so later loads need no token.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from worker.adoption.metrics import adoption_report
from worker.api.context import ApiContext, Context
from worker.api.dashboard_page import page_filters, render
from worker.api.errors import responses

router = APIRouter(tags=["dashboard"])

COOKIE = "passsync_dashboard"


@router.get("/dashboard", response_class=HTMLResponse, responses=responses(401, 403))
def dashboard(request: Request, ctx: Context, token: str = "") -> HTMLResponse:
    """Funnel, adoption over time, platform split, top locations, campaign progress; the
    query's template, pass_key, campaign, platform, since and until filter every chart."""
    presented = token or _bearer(request) or request.cookies.get(COOKIE, "")
    _authorize(ctx, presented)
    with ctx.db.session() as session:
        filters = page_filters(dict(request.query_params))
        report = adoption_report(session, None, filters)
    page = HTMLResponse(render(report, filters, ctx.settings))
    if token:
        page.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/dashboard")
    return page


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else ""


def _authorize(ctx: ApiContext, presented: str) -> None:
    principal = ctx.admin_auth.authenticate(presented) if presented else None
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a read token is needed (?token=...)")
    if "read" not in principal.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "token lacks the read scope")
