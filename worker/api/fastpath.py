"""The receiver's hot path as plain ASGI: `POST /webhooks/{source}` without the framework.

At thousands of requests per second FastAPI's per-request machinery (middleware chain,
routing, exception wrappers, response model) costs more CPU than verifying, validating and
recording an event, and every suspension of the request (reading the body, waiting for
the group commit) resumes through all of it again. `PasssyncApi` answers webhook POSTs
here, calling the same `accept` as the documented FastAPI route, with the same status
codes and JSON bodies; every other request goes to FastAPI as usual.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from worker.api import sources
from worker.api.context import STATE_KEY, ApiContext
from worker.api.edge import EdgeGate, route_path, send_refusal
from worker.api.intake import IntakeUnavailableError
from worker.api.scans import SCAN_ENQUEUE_KEY
from worker.api.webhooks import accept
from worker.db import DATABASE_UNAVAILABLE
from worker.observability import metrics, tracing

log = logging.getLogger("passsync.api.webhooks")

PREFIX = "/webhooks/"
DATABASE_RETRY_AFTER_SECONDS = 5


class PasssyncApi(FastAPI):
    """FastAPI with the edge gate in front and the webhook receiver served by the fast path."""

    gate: EdgeGate | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.gate is not None:
            refusal = self.gate.check(scope)
            if refusal is not None:
                await send_refusal(send, refusal)
                return
            receive = self.gate.receive(scope, receive)
        source = _webhook_source(scope)
        if source is None:
            await super().__call__(scope, receive, send)
            return
        ctx: ApiContext = getattr(self.state, STATE_KEY)
        if tracing.enabled():
            parent = tracing.headers_of(Headers(scope=scope))
            with tracing.span(
                f"POST /webhooks/{source}", parent=parent, server=True, source=source
            ):
                await self._webhook(ctx, source, scope, receive, send)
            return
        await self._webhook(ctx, source, scope, receive, send)

    async def _webhook(
        self, ctx: ApiContext, source: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        adapter = ctx.adapters.get(source)
        if adapter is not None:  # a sender's own format (worker/api/sources.py)
            scan_enqueue = getattr(self.state, SCAN_ENQUEUE_KEY, None)
            status, counts = await sources.serve(
                ctx, adapter, scope, _chunks(receive), send, scan_enqueue=scan_enqueue
            )
            if metrics.enabled():
                _count(ctx, source, status, counts, time.perf_counter() - started)
            return
        status, body, headers = await _handle(ctx, source, scope, receive)
        await _respond(send, status, body, headers)
        if metrics.enabled():
            _count(ctx, source, status, body, time.perf_counter() - started)


def _webhook_source(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path = route_path(scope)
    if not path.startswith(PREFIX):
        return None
    source = path[len(PREFIX) :]
    # Anything but one non-empty segment is FastAPI's to answer (404 / 405).
    return source if source and "/" not in source else None


async def _handle(
    ctx: ApiContext, source: str, scope: Scope, receive: Receive
) -> tuple[int, Any, dict[str, str]]:
    try:
        result = await accept(ctx, source, Headers(scope=scope), _chunks(receive))
    except HTTPException as exc:
        return exc.status_code, {"detail": exc.detail}, dict(exc.headers or {})
    except IntakeUnavailableError as exc:
        return 503, {"detail": exc.reason}, {"Retry-After": str(exc.retry_after)}
    except DATABASE_UNAVAILABLE as exc:
        # The type only: driver messages can carry SQL parameters (customer data).
        log.warning("database unavailable on POST /webhooks/%s (%s)", source, type(exc).__name__)
        return (
            503,
            {"detail": "database unavailable"},
            {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    except Exception:
        log.exception("webhook from source %s failed", source)
        return 500, {"detail": "internal server error"}, {}
    return 202, result.model_dump(), {}


# Why a webhook was refused, from its status (503s carry the intake's reason).
REASONS = {
    400: "bad_request",
    401: "signature",
    404: "unknown_source",
    413: "too_large",
    422: "invalid",
    500: "error",
}


def _count(ctx: ApiContext, source: str, status: int, body: Any, seconds: float) -> None:
    # Label values come from configuration only: an unknown path segment is not a new series.
    known = source if source in ctx.verifiers or source in ctx.adapters else "unknown"
    if 200 <= status < 300 and isinstance(body, dict) and "accepted" in body:
        metrics.webhook_answered(known, status, seconds, None)
        metrics.webhook_events(known, body["accepted"], body["duplicates"])
        return
    reason = REASONS.get(status, str(status))
    if status == 503:
        reason = str(body.get("detail", "unavailable")).replace(" ", "_")
    metrics.webhook_answered(known, status, seconds, reason)


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _respond(send: Send, status: int, payload: Any, headers: dict[str, str]) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
