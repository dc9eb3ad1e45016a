"""POST /providers/passcreator/callbacks: provider callbacks into the adoption ledger."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from worker.adoption.ledger import Callback, parse_callback, record_callback
from worker.api.bodies import parse_json_object, read_body, unprocessable
from worker.api.context import get_context
from worker.api.errors import responses
from worker.bounds import JsonBoundsError, check_json
from worker.db import Database

log = logging.getLogger("passsync.api.callbacks")

router = APIRouter(tags=["callbacks"])
PROVIDER = "passcreator"
# Printable ASCII without spaces, as the signed receivers require of webhook-id.
_DELIVERY_ID = re.compile(r"[\x21-\x7e]{1,255}")


class CallbackAnswer(BaseModel):
    recorded: bool
    kind: str | None


@router.post(
    "/providers/passcreator/callbacks",
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(400, 401, 413, 422, 503),
)
async def receive_callback(
    request: Request,
    token: Annotated[str, Query(max_length=512)] = "",
    event: Annotated[str, Query(max_length=64)] = "",
) -> CallbackAnswer:
    """Authenticated by the secret token in the URL; deduplicated; recorded before the answer.

    The event comes from `?event=` (passsync subscribes one URL per event) or the body.
    """
    ctx = await get_context(request)
    secret = ctx.settings.callbacks.secret
    if secret is None or not _same(token, secret.get_secret_value()):
        log.info("provider callback refused: bad or missing token")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad or missing token")
    raw = await read_body(request.stream(), ctx.settings.api.max_body_bytes)
    payload = _bounded(parse_json_object(raw))
    name = event or str(payload.get("event") or payload.get("type") or "")
    callback = parse_callback(name, payload, _delivery_id(request.headers.get("webhook-id")), raw)
    if callback is None:
        return CallbackAnswer(recorded=False, kind=None)
    recorded = await run_in_threadpool(_record, ctx.db, callback)
    return CallbackAnswer(recorded=recorded, kind=str(callback.kind))


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


def _record(db: Database, callback: Callback) -> bool:
    with db.session() as session:
        return record_callback(session, PROVIDER, callback)
