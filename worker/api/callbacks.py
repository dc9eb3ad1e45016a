"""POST /providers/{account}/callbacks: an account's platform callbacks into the adoption ledger.

The core authenticates (the secret URL token), reads the bounded body, and hands it to the
account's platform parser (its descriptor's `parse_callback`), which turns it into neutral
facts; each is recorded once per (account, callback id).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from worker.adoption.ledger import Callback, record_callback
from worker.api.context import get_context
from worker.api.webhooks import _read_body
from worker.db import Database
from worker.providers import registry
from worker.providers.port import CallbackError, CallbackRequest

log = logging.getLogger("passsync.api.callbacks")

router = APIRouter(tags=["callbacks"])


class CallbackAnswer(BaseModel):
    recorded: bool
    kind: str | None


@router.post("/providers/{account}/callbacks", status_code=status.HTTP_202_ACCEPTED)
async def receive_callback(request: Request, account: str, token: str = "") -> CallbackAnswer:
    """Authenticated by the secret token in the URL; deduplicated; recorded before the answer.

    404 for an account that is not configured or whose platform sends no callbacks.
    """
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
    raw = await _read_body(request.stream(), ctx.settings.api.max_body_bytes)
    query = {key: value for key, value in request.query_params.items() if key != "token"}
    headers = {key.lower(): value for key, value in request.headers.items()}
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


def _record(db: Database, account: str, facts: list[Callback]) -> bool:
    with db.session() as session:
        recorded = [record_callback(session, account, fact) for fact in facts]
    return any(recorded)
