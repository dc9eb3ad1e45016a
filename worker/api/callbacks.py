"""/providers/{account}/callbacks: an account's platform callbacks into the adoption ledger.

The core authenticates (the secret token: `?token=`, a bearer header, or the first path
segment after /callbacks for platforms that append their own paths), checks that the
method is one the account's platform calls back with (its descriptor's `callback_methods`: some
platforms send PUT or DELETE too) and any path after /callbacks matches its `callback_path`,
reads the bounded body (a JSON object within the JSON bounds) and checks the delivery id, then
hands the request to the platform's parser (`parse_callback`), which turns it into neutral
facts; each is recorded once per (account, callback id).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from worker.adoption.ledger import Callback, record_callback
from worker.api.bodies import parse_json_object, read_body, unprocessable
from worker.api.context import get_context
from worker.api.errors import responses
from worker.bounds import JsonBoundsError, check_json
from worker.db import Database
from worker.providers import registry
from worker.providers.port import CallbackError, CallbackRequest

log = logging.getLogger("passsync.api.callbacks")

router = APIRouter(tags=["callbacks"])
# Printable ASCII without spaces, as the signed receivers require of webhook-id.
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,255}")


class CallbackAnswer(BaseModel):
    recorded: bool
    kind: str | None


# Every method some registered platform calls back with; each account is held to its own.
METHODS = registry.callback_methods()
CODES = (400, 401, 404, 405, 413, 422, 503)


async def receive_callback(
    request: Request,
    account: str,
    token: Annotated[str, Query(max_length=512)] = "",
    event: Annotated[str, Query(max_length=64)] = "",
) -> CallbackAnswer:
    """Authenticated by the secret token; deduplicated; recorded before the answer.

    404 for an account that is not configured or whose platform sends no callbacks, 405 for a
    method its platform does not call back with. The platform's parser reads the event from
    `?event=` (when passsync subscribed one URL per event) or the body.
    """
    return await _receive(request, account, "", token, event)


async def receive_callback_at(
    request: Request,
    account: str,
    path: str,
    token: Annotated[str, Query(max_length=512)] = "",
    event: Annotated[str, Query(max_length=64)] = "",
) -> CallbackAnswer:
    """A callback to a path the platform appends to the callbacks URL (its `callback_path`);
    404 for a path it does not call back to."""
    return await _receive(request, account, f"/{path}", token, event)


for _method in METHODS:
    for _path, _endpoint in (
        ("/providers/{account}/callbacks", receive_callback),
        ("/providers/{account}/callbacks/{path:path}", receive_callback_at),
    ):
        router.add_api_route(
            _path,
            _endpoint,
            methods=[_method],
            name=f"{_endpoint.__name__}_{_method.lower()}",
            status_code=status.HTTP_202_ACCEPTED,
            responses=responses(*CODES),
        )


async def _receive(
    request: Request, account: str, path: str, token: str, event: str
) -> CallbackAnswer:
    ctx = await get_context(request)
    secret = ctx.settings.callbacks.secret
    presented = token or _bearer(request.headers.get("authorization", ""))
    if not presented and path:
        # A platform that appends its own paths to a registered base URL (and signs nothing)
        # gets the token as the base URL's last segment: /callbacks/<token>/<its path>.
        presented, _, rest = path.removeprefix("/").partition("/")
        path = f"/{rest}" if rest else ""
    if secret is None or not _same(presented, secret.get_secret_value()):
        log.info("provider callback refused: bad or missing token")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad or missing token")
    try:
        kind = registry.account(ctx.settings, account).kind
    except LookupError:
        kind = None
    parse = kind.parse_callback if kind is not None else None
    if kind is None or parse is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account with callbacks")
    if request.method not in kind.callback_methods:
        allowed = ", ".join(sorted(kind.callback_methods))
        raise HTTPException(
            status.HTTP_405_METHOD_NOT_ALLOWED,
            f"{kind.title} calls back with {allowed}, not {request.method}",
            headers={"Allow": allowed},
        )
    if path and (kind.callback_path is None or not re.fullmatch(kind.callback_path, path)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{kind.title} calls back to no such path")
    raw = await read_body(request.stream(), ctx.settings.api.max_body_bytes)
    _bounded(parse_json_object(raw))
    headers = {key.lower(): value for key, value in request.headers.items()}
    headers.pop("authorization", None)  # the token: never handed on, never stored
    delivery = _delivery_id(headers.pop("webhook-id", None))
    if delivery is not None:
        headers["webhook-id"] = delivery
    query = {"event": event} if event else {}
    callback = CallbackRequest(
        query=query, headers=headers, body=raw, method=request.method, path=path
    )
    try:
        facts = parse(callback)
    except CallbackError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    if not facts:
        return CallbackAnswer(recorded=False, kind=None)
    recorded = await run_in_threadpool(_record, ctx.db, account, facts)
    return CallbackAnswer(recorded=recorded, kind=str(facts[0].kind))


def _bearer(value: str) -> str:
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


def _same(presented: str, expected: str) -> bool:
    # Digests of equal length: the comparison leaks neither content nor length.
    digest = hashlib.sha256
    return bool(expected) and hmac.compare_digest(
        digest(presented.encode()).digest(), digest(expected.encode()).digest()
    )


def _bounded(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        check_json(payload)
    except JsonBoundsError as exc:
        unprocessable(["body"], str(exc))
    return payload


def _delivery_id(value: str | None) -> str | None:
    """The delivery id header as stored (callback_id is 255 characters): checked, not cut."""
    if value is None:
        return None
    if not _DELIVERY_ID.fullmatch(value):
        unprocessable(["header", "webhook-id"], "1 to 255 printable ASCII characters")
    return value


def _record(db: Database, account: str, facts: list[Callback]) -> bool:
    with db.session() as session:
        recorded = [record_callback(session, account, fact) for fact in facts]
    return any(recorded)
