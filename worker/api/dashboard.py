"""GET /dashboard: the adoption dashboard as one HTML page of server-drawn SVG charts.

Works offline (no script, no CDN). A browser authenticates with `?token=<read token>` once;
the answer sets an HttpOnly cookie (a read-only session) so later loads need no token.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from worker.adoption.charts import hbar_chart, progress_chart, timeline_chart
from worker.adoption.metrics import Filters, adoption_report
from worker.api.context import ApiContext, Context
from worker.api.errors import responses

router = APIRouter(tags=["dashboard"])

COOKIE = "passsync_dashboard"
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:24px;background:#f9fafb;color:#111827}"
    "h1{font-size:22px}.grid{display:grid;grid-template-columns:repeat(2,minmax(0,580px));gap:16px}"
    ".card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px}"
    "svg text{font-size:12px;fill:#111827}svg .title{font-size:14px;font-weight:600}"
    "svg .empty{fill:#6b7280}.kpi{color:#374151;margin:4px 0 16px}"
)


@router.get("/dashboard", response_class=HTMLResponse, responses=responses(401, 403))
def dashboard(request: Request, ctx: Context, token: str = "") -> HTMLResponse:
    """Funnel, adoption over time, platform split, top locations, campaign progress."""
    presented = token or _bearer(request) or request.cookies.get(COOKIE, "")
    _authorize(ctx, presented)
    with ctx.db.session() as session:
        report = adoption_report(session, ctx.settings.sync.provider, Filters())
    page = HTMLResponse(render(report))
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


def render(report: dict[str, Any]) -> str:
    """The page: a short headline, then the five charts."""
    steps = [(s["step"], float(s["count"])) for s in report["steps"]]
    wait = report["time_to_install_seconds"]["median"]
    charts = [
        hbar_chart("funnel", "Adoption funnel (passes)", steps),
        timeline_chart(
            "over-time",
            "Adoption over time (per day)",
            report["days"],
            ("issued", "installed", "used"),
        ),
        hbar_chart("platforms", "Platform split (downloaded)", _pairs(report["platforms"])),
        hbar_chart(
            "locations",
            "Top locations by scans",
            [(r["location"], float(r["scans"])) for r in report["top_locations"]],
        ),
        progress_chart(
            "campaigns",
            "Campaign progress (recipients done)",
            [(c["name"], c["done"], c["total"]) for c in report["campaigns"]],
        ),
    ]
    headline = "median time to install: " + ("-" if wait is None else f"{wait / 60:.1f} min")
    cards = "".join(f'<div class="card">{chart}</div>' for chart in charts)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>passsync adoption</title><style>{STYLE}</style></head><body>"
        f'<h1>passsync: pass adoption</h1><p class="kpi">{escape(headline)}</p>'
        f'<div class="grid">{cards}</div></body></html>'
    )


def _pairs(counts: dict[str, int]) -> list[tuple[str, float]]:
    return [(name, float(n)) for name, n in counts.items()]
