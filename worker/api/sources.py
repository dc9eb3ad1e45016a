"""POST /webhooks/{source} for a sender's own format (Shopify, Stripe, ...): the HTTP edge.

Same guarantees as the standard receiver: credentials and timestamp from the headers before
the body is read, the signature on the raw bytes before anything parses them, every event
committed (canonical events through the group commit, ignored items and scans in their own
transaction) before the answer, and the answer the sender expects (status, body, content
type). Bad input is a 4xx with nothing stored. Served by the fast path (PasssyncApi).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
from fastapi import HTTPException, Request, Response
from starlette.types import Scope, Send

from worker.api.bodies import check_content_length, read_body
from worker.api.context import ApiContext
from worker.api.intake import IntakeUnavailableError
from worker.api.scans import SCAN_ENQUEUE_KEY
from worker.db import DATABASE_UNAVAILABLE, Database
from worker.inbound.ledger import IgnoredEvent, record_ignored
from worker.inbound.signatures import SignatureError
from worker.inbound.sources.adapter import Mapped, RefusedError, RequestParts, SourceAdapter
from worker.scans.ledger import record_scans
from worker.scans.schema import ScanIn

log = logging.getLogger("passsync.api.sources")

ScanEnqueue = Callable[[list[int]], None]
DATABASE_RETRY_AFTER_SECONDS = 5
# status, body, headers, and the counts (or {"detail": ...}) for metrics
Answer = tuple[int, bytes, list[tuple[bytes, bytes]], dict[str, Any]]


async def serve(
    ctx: ApiContext,
    adapter: SourceAdapter,
    scope: Scope,
    chunks: AsyncIterator[bytes],
    send: Send,
    *,
    scan_enqueue: ScanEnqueue | None,
) -> tuple[int, dict[str, Any]]:
    """Answer one webhook POST of `adapter`'s source (the fast path calls this); the status
    and, for metrics, the counts or the refusal's detail."""
    status, body, headers, summary = await _handle(ctx, adapter, scope, chunks, scan_enqueue)
    raw = [(b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
    return status, summary


async def respond(ctx: ApiContext, adapter: SourceAdapter, request: Request) -> Response:
    """The same answer as `serve`, as a Response (the documented FastAPI route's path)."""
    scan_enqueue = getattr(request.app.state, SCAN_ENQUEUE_KEY, None)
    status, body, headers, _ = await _handle(
        ctx, adapter, request.scope, request.stream(), scan_enqueue
    )
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


def request_parts(scope: Scope, *, with_url: bool = True) -> RequestParts:
    """Method, the URL as received (the adapter puts a configured public URL in its place;
    left empty unless `with_url`: only a signature over the URL needs it), headers, query."""
    # ASGI names are lower case; one dict makes every lookup O(1) (Starlette's Headers scans
    # the list per lookup). Reversed, so the first of repeated headers wins, as in Headers.
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
    query = scope.get("query_string", b"").decode("latin-1")
    return RequestParts(
        method=scope["method"],
        url=_received_url(scope, headers, query) if with_url else "",
        headers=headers,
        query=dict(parse_qsl(query, keep_blank_values=True)) if query else {},
    )


def _received_url(scope: Scope, headers: dict[str, str], query: str) -> str:
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope.get("root_path", "") + scope["path"]
    host = headers.get("host") or "localhost"
    return f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")


async def _handle(
    ctx: ApiContext,
    adapter: SourceAdapter,
    scope: Scope,
    chunks: AsyncIterator[bytes],
    scan_enqueue: ScanEnqueue | None,
) -> Answer:
    source = adapter.name
    try:
        parts = request_parts(scope, with_url=adapter.signs_url and not adapter.public_url)
        limit = ctx.settings.api.max_body_bytes
        check_content_length(parts.headers, limit)
        checked = adapter.check_headers(parts)
        body = await read_body(chunks, limit)
        adapter.verify_body(checked, parts, body)
        mapped = adapter.map_request(checked, parts, body)
        counts = await _record(ctx, source, mapped, scan_enqueue)
    except SignatureError as exc:
        return _refused(source, 401, exc.reason)
    except RefusedError as exc:
        return _refused(source, exc.status, exc.reason)
    except HTTPException as exc:
        return _json(exc.status_code, {"detail": exc.detail})
    except IntakeUnavailableError as exc:
        return _json(503, {"detail": exc.reason}, retry_after=exc.retry_after)
    except DATABASE_UNAVAILABLE as exc:
        # The type only: driver messages can carry SQL parameters (customer data).
        log.warning("database unavailable on POST /webhooks/%s (%s)", source, type(exc).__name__)
        return _json(503, {"detail": "database unavailable"}, DATABASE_RETRY_AFTER_SECONDS)
    except Exception:
        log.exception("webhook from source %s failed", source)
        return _json(500, {"detail": "internal server error"})
    status, content_type, fixed = adapter.answer()
    if fixed is None:
        return _json(status, counts)
    return status, fixed, [(b"content-type", content_type.encode())], counts


async def _record(
    ctx: ApiContext, source: str, mapped: Mapped, scan_enqueue: ScanEnqueue | None
) -> dict[str, int]:
    """Commit everything the request carried; the answer's counts."""
    accepted = duplicates = 0
    if mapped.events:
        result = await ctx.intake.submit(source, mapped.events)
        accepted += len(result.accepted_ids)
        duplicates += result.duplicates
    if mapped.scans:
        new_ids = await anyio.to_thread.run_sync(_record_scans, ctx.db, source, mapped.scans)
        accepted += len(new_ids)
        duplicates += len(mapped.scans) - len(new_ids)
        _publish_scans(scan_enqueue, new_ids)
    if mapped.ignored:
        await anyio.to_thread.run_sync(_record_ignored, ctx.db, source, mapped.ignored)
    return {"accepted": accepted, "duplicates": duplicates, "ignored": len(mapped.ignored)}


def _record_scans(db: Database, source: str, scans: list[ScanIn]) -> list[int]:
    with db.session() as session:
        return record_scans(session, source, scans).new_ids


def _record_ignored(db: Database, source: str, ignored: list[IgnoredEvent]) -> int:
    with db.session() as session:
        return record_ignored(session, source, ignored)


def _publish_scans(scan_enqueue: ScanEnqueue | None, ids: list[int]) -> None:
    if scan_enqueue is None or not ids:
        return  # the beat sweep publishes recorded scans
    try:
        scan_enqueue(ids)
    except Exception as exc:  # committed: the sweep publishes them later
        log.warning("scan publish failed (%s); the sweep will retry", type(exc).__name__)


def _refused(source: str, status: int, detail: str | list[dict[str, Any]]) -> Answer:
    shown = detail if isinstance(detail, str) else f"{len(detail)} field error(s)"
    log.info("webhook rejected: source=%s status=%d reason=%s", source, status, shown)
    return _json(status, {"detail": detail})


def _json(status: int, payload: Any, retry_after: int | None = None) -> Answer:
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    return status, json.dumps(payload, separators=(",", ":")).encode(), headers, payload
