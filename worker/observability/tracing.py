"""OpenTelemetry traces (the optional `otel` extra), off by default.

One trace follows an event: the receiver's request span (continuing a sender's
`traceparent` if it sent one), the ledger write it waited for, the Celery task that applied
it (the W3C context travels in the message's headers, per ledger id, through the group
commit and the dispatch fan-out), and one span per HTTP attempt at the provider (recorded
from the client's attempt record, with its real start and end).

With tracing off nothing here imports OpenTelemetry and every call returns at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from worker.config import ConfigError, TracingSettings

TRACER_NAME = "passsync"
TRACE_HEADERS = ("traceparent", "tracestate")

_state: dict[str, Any] = {"tracer": None, "provider": None}
# Ledger id -> the W3C headers of the request that recorded it (set around a publish).
_carriers: ContextVar[Mapping[int, Mapping[str, str]] | None] = ContextVar(
    "passsync_trace_carriers", default=None
)


def enabled() -> bool:
    return _state["tracer"] is not None


def setup_tracing(settings: TracingSettings, exporter: Any = None) -> None:
    """Install a tracer provider (OTLP/HTTP, the console, or `exporter`, e.g. in-memory)."""
    if not settings.enabled:
        return
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        raise ConfigError(
            "tracing.enabled (PASSSYNC_TRACING__ENABLED) needs the otel extra: "
            "pip install 'passsync[otel]'"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    else:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    _state["provider"] = provider
    _state["tracer"] = trace.get_tracer(TRACER_NAME, tracer_provider=provider)


def shutdown() -> None:
    """Flush and forget the tracer (tests, and a process that is stopping)."""
    provider = _state["provider"]
    if provider is not None:
        provider.shutdown()
    _state["tracer"] = _state["provider"] = None


@contextmanager
def span(
    name: str, *, parent: Mapping[str, str] | None = None, server: bool = False, **attrs: Any
) -> Iterator[None]:
    """A span around the block (a child of the current one, or of the W3C `parent`)."""
    tracer = _state["tracer"]
    if tracer is None:
        yield
        return
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    context = extract(dict(parent)) if parent else None
    kind = SpanKind.SERVER if server else SpanKind.INTERNAL
    attributes = {k: v for k, v in attrs.items() if v is not None}
    with tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes):
        yield


def current_carrier() -> dict[str, str] | None:
    """The current span's W3C headers (traceparent, tracestate), or None."""
    if _state["tracer"] is None:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier or None


def headers_of(request_headers: Mapping[str, str]) -> dict[str, str] | None:
    """A sender's W3C headers, to continue its trace."""
    if _state["tracer"] is None:
        return None
    found = {k: request_headers[k] for k in TRACE_HEADERS if k in request_headers}
    return found or None


@contextmanager
def carriers(by_id: Mapping[int, Mapping[str, str]]) -> Iterator[None]:
    """Publishes inside the block carry each ledger id's trace headers."""
    token = _carriers.set(by_id or None)
    try:
        yield
    finally:
        _carriers.reset(token)


def carriers_now() -> dict[int, dict[str, str]]:
    found = _carriers.get()
    return {} if not found else {int(k): dict(v) for k, v in found.items()}


def headers_for(event_id: int) -> dict[str, str]:
    """The trace headers to publish with this ledger id's task (empty when none)."""
    found = _carriers.get()
    if not found:
        return {}
    return dict(found.get(event_id) or {})


def record_attempt(
    action: str, method: str, status: int | None, outcome: str, duration_ms: float
) -> None:
    """A span for one finished provider HTTP attempt, timed from its record."""
    tracer = _state["tracer"]
    if tracer is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    end = time.time_ns()
    start = end - int(duration_ms * 1_000_000)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "passsync.action": action,
        "passsync.outcome": outcome,
    }
    if status is not None:
        attributes["http.response.status_code"] = status
    current = tracer.start_span(
        f"provider {action}", kind=SpanKind.CLIENT, start_time=start, attributes=attributes
    )
    if outcome not in ("ok", "already_exists"):
        current.set_status(Status(StatusCode.ERROR, outcome))
    current.end(end_time=end)
