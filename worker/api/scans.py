"""POST /scans/{source}: point-of-sale scans, signed like the CRM webhooks, 202 after commit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from worker.api.bodies import check_content_length, field_errors, parse_json_object, read_body
from worker.api.context import ApiContext, get_context
from worker.api.errors import responses
from worker.db import Database
from worker.inbound.signatures import SignatureError
from worker.scans.ledger import Recorded, record_scans
from worker.scans.schema import ScanBatch, ScanIn

log = logging.getLogger("passsync.api.scans")

router = APIRouter(tags=["scans"])

# app.state attribute holding the publisher of scan ids (None: the beat sweep picks them up).
SCAN_ENQUEUE_KEY = "passsync_scan_enqueue"
ScanEnqueue = Callable[[list[int]], None]


class ScansAccepted(BaseModel):
    accepted: int
    duplicates: int


@router.post(
    "/scans/{source}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(400, 401, 404, 413, 422, 503),
)
async def receive_scans(source: str, request: Request) -> ScansAccepted:
    """One scan or {"scans": [...]}; a scan id seen before from this source is a duplicate."""
    ctx = await get_context(request)
    body = await _verified_body(ctx, source, request)
    scans = _parse(body, ctx.settings.api.max_batch_events)
    recorded = await run_in_threadpool(_record, ctx.db, source, scans)
    enqueue: ScanEnqueue | None = getattr(request.app.state, SCAN_ENQUEUE_KEY, None)
    if enqueue is not None and recorded.new_ids:
        try:
            enqueue(recorded.new_ids)
        except Exception as exc:  # the ledger holds them: the sweep publishes them later
            log.warning("scan publish failed (%s); the sweep will retry", type(exc).__name__)
    return ScansAccepted(accepted=len(recorded.new_ids), duplicates=recorded.duplicates)


async def _verified_body(ctx: ApiContext, source: str, request: Request) -> bytes:
    verifier = ctx.verifiers.get(source)
    if verifier is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown source")
    limit = ctx.settings.api.max_body_bytes
    check_content_length(request.headers, limit)
    try:
        signed = verifier.check_headers(request.headers)
        body = await read_body(request.stream(), limit)
        verifier.verify_body(signed, body)
    except SignatureError as exc:
        log.info("scan rejected: source=%s reason=%s", source, exc.reason)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, exc.reason) from None
    return body


def _parse(body: bytes, max_batch: int) -> list[ScanIn]:
    data = parse_json_object(body)
    batch = data.get("scans")
    if isinstance(batch, list) and len(batch) > max_batch:
        _unprocessable(
            [{"loc": ["body", "scans"], "msg": f"at most {max_batch}", "type": "too_long"}]
        )
    try:
        scans = (
            ScanBatch.model_validate(data).scans
            if "scans" in data
            else [ScanIn.model_validate(data)]
        )
    except ValidationError as exc:
        _unprocessable(field_errors(exc))
    return scans


def _unprocessable(errors: list[dict[str, Any]]) -> NoReturn:
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, errors)


def _record(db: Database, source: str, scans: list[ScanIn]) -> Recorded:
    with db.session() as session:
        return record_scans(session, source, scans)
