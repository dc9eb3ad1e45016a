"""The receiver: verify on the raw bytes, validate, record in the ledger, commit, enqueue, 202."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, NoReturn

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ValidationError

from worker.api import sources
from worker.api.bodies import check_content_length, field_errors, parse_json_object, read_body
from worker.api.context import ApiContext, get_context
from worker.api.errors import responses
from worker.inbound.schema import CanonicalEvent, EventBatch
from worker.inbound.signatures import SignatureError
from worker.observability import tracing

log = logging.getLogger("passsync.api.webhooks")

router = APIRouter(tags=["webhooks"])


class Accepted(BaseModel):
    accepted: int
    duplicates: int


SENDER_KIND_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A source of a sender's own kind (shopify, stripe, ...; README, "
        '"Sources"): recorded, {"accepted", "duplicates", "ignored"}; Salesforce gets its '
        "SOAP Ack (text/xml)."
    }
}


@router.post(
    "/webhooks/{source}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={**SENDER_KIND_ANSWER, **responses(400, 401, 404, 413, 422, 503)},
)
async def receive_webhook(source: str, request: Request) -> Any:
    """One canonical event or {"events": [...]}, signed with the source's secret.

    A source of a sender's own kind (worker/api/sources.py) takes that sender's webhook as
    it sends it. Under the production app (`PasssyncApi`) this route is served by the fast path in
    worker/api/fastpath.py, which calls the same functions; the route stays for the OpenAPI
    document and for apps built without the fast path.
    """
    ctx = await get_context(request)
    adapter = ctx.adapters.get(source)
    if adapter is not None:
        return await sources.respond(ctx, adapter, request)
    return await accept(ctx, source, request.headers, request.stream())


async def accept(
    ctx: ApiContext, source: str, headers: Mapping[str, str], chunks: AsyncIterator[bytes]
) -> Accepted:
    """Verify, validate, record durably (group commit), enqueue; raises HTTPException."""
    verifier = ctx.verifiers.get(source)
    if verifier is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown source")
    limit = ctx.settings.api.max_body_bytes
    check_content_length(headers, limit)
    try:
        # Headers and timestamp first: an unsigned or stale request costs no body read.
        signed = verifier.check_headers(headers)
        body = await read_body(chunks, limit)
        verifier.verify_body(signed, body)
    except SignatureError as exc:
        _reject(source, status.HTTP_401_UNAUTHORIZED, exc.reason)
    events = _parse_events(source, body, ctx.settings.api.max_batch_events)
    # Committed (group commit with concurrent requests) when this returns; the group's ids
    # are published to the broker right after the answers go out.
    with tracing.span("ledger.record", events=len(events)):
        result = await ctx.intake.submit(source, events)
    if log.isEnabledFor(logging.INFO):
        _log_accepted(source, events, result.accepted_ids, result.duplicates)
    return Accepted(accepted=len(result.accepted_ids), duplicates=result.duplicates)


def _log_accepted(
    source: str, events: list[CanonicalEvent], ids: list[int], duplicates: int
) -> None:
    """One line per request: the ledger id(s) the workers' lines will carry as event_id."""
    extra: dict[str, Any] = {"source": source, "duplicates": duplicates}
    if len(events) == 1:
        extra["source_event_id"] = events[0].id
        if ids:
            extra["event_id"] = ids[0]
    else:
        extra["event_ids"] = ids
    log.info("webhook accepted: %d new, %d duplicate", len(ids), duplicates, extra=extra)


def _parse_events(source: str, body: bytes, max_batch: int) -> list[CanonicalEvent]:
    try:
        data = parse_json_object(body)
    except HTTPException as exc:
        _reject(source, exc.status_code, exc.detail)
    batch = data.get("events")
    if isinstance(batch, list) and len(batch) > max_batch:
        error = {
            "loc": ["body", "events"],
            "msg": f"a batch holds at most {max_batch} events",
            "type": "too_long",
        }
        _reject(source, status.HTTP_422_UNPROCESSABLE_CONTENT, [error])
    try:
        if "events" in data:
            return EventBatch.model_validate(data).events
        return [CanonicalEvent.model_validate(data)]
    except ValidationError as exc:
        _reject(source, status.HTTP_422_UNPROCESSABLE_CONTENT, field_errors(exc))


def _reject(source: str, code: int, detail: str | list[dict[str, Any]]) -> NoReturn:
    log.info(
        "webhook rejected: source=%s status=%d reason=%s",
        source,
        code,
        detail if isinstance(detail, str) else f"{len(detail)} field error(s)",
    )
    raise HTTPException(code, detail)
