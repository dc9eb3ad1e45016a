"""POST /providers/{account}/callbacks: an account's platform callbacks into the adoption ledger.

The core authenticates (the secret URL token), reads the bounded body (a JSON object within
the JSON bounds) and checks the delivery id, then hands the request to the account's
platform parser (its descriptor's `parse_callback`), which turns it into neutral facts; each
is recorded once per (account, callback id).
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


@router.post(
    "/providers/{account}/callbacks",
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(400, 401, 404, 413, 422, 503),
)
async def receive_callback(
    request: Request,
    account: str,
    token: Annotated[str, Query(max_length=512)] = "",
    event: Annotated[str, Query(max_length=64)] = "",
) -> CallbackAnswer:
    """Authenticated by the secret token in the URL; deduplicated; recorded before the answer.

    404 for an account that is not configured or whose platform sends no callbacks. The
    platform's parser reads the event from `?event=` (when passsync subscribed one URL per
    event) or the body.
    """
    return await _receive(request, account, token, {"event": event} if event else {})


@router.post(
    "/providers/{account}/callbacks/{token}/{path:path}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(400, 401, 404, 413, 422, 503),
)
async def receive_callback_at_path(
    request: Request, account: str, token: str, path: str
) -> CallbackAnswer:
    """For platforms that append their own paths to a registered base URL (e.g.
    `{baseUrl}/v1/pass/install`): the token is the path segment after /callbacks, compared
    like the query token; the appended path reaches the platform's parser as `path`."""
    return await _receive(request, account, token, {"path": path[:255]})


async def _receive(
    request: Request, account: str, token: str, query: dict[str, str]
) -> CallbackAnswer:
    ctx = await get_context(request)
    secret = ctx.settings.callbacks.secret
    if secret is None or not _same(token, secret.get_secret_value()):
        log.info("provider callback refused: bad or missing token")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad or missing token")
    try:
        parse = registry.account(ctx.settings, account).kind.parse_callback
    except LookupError:
        parse = None
    if parse is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account with callbacks")
    raw = await read_body(request.stream(), ctx.settings.api.max_body_bytes)
    _bounded(parse_json_object(raw))
    headers = {key.lower(): value for key, value in request.headers.items()}
    delivery = _delivery_id(headers.pop("webhook-id", None))
    if delivery is not None:
        headers["webhook-id"] = delivery
    try:
        facts = parse(CallbackRequest(query=query, headers=headers, body=raw))
    except CallbackError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    if not facts:
        return CallbackAnswer(recorded=False, kind=None)
    recorded = await run_in_threadpool(_record, ctx.db, account, facts)
    return CallbackAnswer(recorded=recorded, kind=str(facts[0].kind))


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
