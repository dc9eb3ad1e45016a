"""POST /providers/passcreator/callbacks: provider callbacks into the adoption ledger."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from worker.adoption.ledger import Callback, parse_callback, record_callback
from worker.api.context import get_context
from worker.api.webhooks import _read_body
from worker.db import Database

log = logging.getLogger("passsync.api.callbacks")

router = APIRouter(tags=["callbacks"])
PROVIDER = "passcreator"


class CallbackAnswer(BaseModel):
    recorded: bool
    kind: str | None


@router.post("/providers/passcreator/callbacks", status_code=status.HTTP_202_ACCEPTED)
async def receive_callback(request: Request, token: str = "", event: str = "") -> CallbackAnswer:
    """Authenticated by the secret token in the URL; deduplicated; recorded before the answer.

    The event comes from `?event=` (passsync subscribes one URL per event) or the body.
    """
    ctx = await get_context(request)
    secret = ctx.settings.callbacks.secret
    if secret is None or not _same(token, secret.get_secret_value()):
        log.info("provider callback refused: bad or missing token")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad or missing token")
    raw = await _read_body(request.stream(), ctx.settings.api.max_body_bytes)
    payload = _object(raw)
    name = event or str(payload.get("event") or payload.get("type") or "")
    callback = parse_callback(name, payload, request.headers.get("webhook-id"), raw)
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


def _object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body must be a JSON object")
    return data


def _record(db: Database, callback: Callback) -> bool:
    with db.session() as session:
        return record_callback(session, PROVIDER, callback)
