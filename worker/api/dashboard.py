"""GET /dashboard: the adoption dashboard as one HTML page of server-drawn SVG charts.

Works offline (no script, no CDN). A browser signs in with a one-time login link
(`passsync dashboard` prints one; `GET /api/dashboard/link` makes one for a read token): it
sets an HttpOnly session cookie, read-only, expiring, `Secure` over HTTPS (or behind a proxy
that says so), holding a random session id, never the token (see worker/api/login.py).
Scripts may send `Authorization: Bearer <read token>` instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from worker.adoption.metrics import adoption_report
from worker.api import login
from worker.api.auth import ReadAccess
from worker.api.context import ApiContext, Context
from worker.api.dashboard_page import page_filters, render
from worker.api.errors import responses

router = APIRouter(tags=["dashboard"])

COOKIE = "passsync_dashboard"
USED_LINKS_KEY = "passsync_dashboard_used_links"
SIGN_IN = "sign in with a login link (`passsync dashboard`) or a bearer read token"


@router.get("/dashboard", response_class=HTMLResponse, responses=responses(401, 403))
def dashboard(request: Request, ctx: Context) -> HTMLResponse:
    """Funnel, adoption over time, platform split, top locations, campaign progress; the
    query's template, pass_key, campaign, platform, since and until filter every chart."""
    _authorize(ctx, request)
    with ctx.db.session() as session:
        filters = page_filters(dict(request.query_params))
        report = adoption_report(session, None, filters)
    return HTMLResponse(render(report, filters, ctx.settings))


@router.get(
    login.LOGIN_PATH,
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses=responses(401, 422),
)
def sign_in(
    request: Request, ctx: Context, code: Annotated[str, Query(max_length=512)] = ""
) -> Response:
    """Exchange a one-time login link for a session cookie, then go to the dashboard."""
    found = _signed(ctx, "link", code)
    used: login.UsedLinks | None = getattr(request.app.state, USED_LINKS_KEY, None)
    if used is None:
        used = login.UsedLinks()
        setattr(request.app.state, USED_LINKS_KEY, used)
    if found is None or not used.first_use(found[0]):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "login link invalid, expired or used")
    session = login.make_code("session", found[0].name, found[1], ttl=login.SESSION_SECONDS)
    answer = RedirectResponse("/dashboard", status_code=status.HTTP_303_SEE_OTHER)
    answer.set_cookie(
        COOKIE,
        session,
        max_age=login.SESSION_SECONDS,
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.get("/api/dashboard/link", tags=["dashboard"])
def make_link(principal: ReadAccess, ctx: Context) -> dict[str, Any]:
    """A one-time login link for the dashboard, for the presenting read token."""
    found = ctx.admin_auth.signing_key(principal.name)
    if found is None:  # the token was just authenticated; it has a key
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown token")
    code = login.make_code("link", principal.name, found[0], ttl=login.LINK_SECONDS)
    return {"path": f"{login.LOGIN_PATH}?code={code}", "expires_in": login.LINK_SECONDS}


def _authorize(ctx: ApiContext, request: Request) -> None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        principal = ctx.admin_auth.authenticate(header[7:].strip())
        if principal is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, SIGN_IN)
        if "read" not in principal.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "token lacks the read scope")
        return
    if _signed(ctx, "session", request.cookies.get(COOKIE, "")) is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, SIGN_IN)


def _signed(ctx: ApiContext, purpose: str, code: str) -> tuple[login.Signed, bytes] | None:
    """The verified code and its key, if a configured read token signed it."""
    name = login.token_name(code) if code else None
    found = ctx.admin_auth.signing_key(name) if name else None
    if found is None or "read" not in found[1]:
        return None
    signed = login.verify(purpose, code, found[0])
    return None if signed is None else (signed, found[0])
