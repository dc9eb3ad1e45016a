"""Traces (the otel extra): receiver -> ledger -> task -> provider call as one trace, the W3C
context carried per ledger id through the group commit and in the Celery message headers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.api.conftest import SECRET, BrokerPing, signed_headers
from tests.observability.test_metrics import event_body
from worker.api.app import create_app
from worker.audit import AuditRecorder
from worker.config import Settings, TracingSettings
from worker.db import Database
from worker.observability import tracing
from worker.providers.memory import MemoryProvider
from worker.sync.engine import SyncContext
from worker.sync.templates import TemplateResolver
from worker.tasks import jobs
from worker.tasks.app import celery_app, configure
from worker.tasks.runtime import Runtime, reset_runtime, set_runtime


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.setup_tracing(TracingSettings(enabled=True), exporter=exporter)
    yield exporter
    tracing.shutdown()


class CapturingEnqueue:
    """The receiver's publish: records each id's trace headers as the real one sends them."""

    def __init__(self) -> None:
        self.headers: dict[int, dict[str, str]] = {}

    def __call__(self, ids: list[int]) -> None:
        for event_id in ids:
            self.headers[event_id] = tracing.headers_for(event_id)


@dataclass(frozen=True)
class Attempt:
    action: str
    method: str = "POST"
    path: str = "/p"
    status: int | None = 200
    duration_ms: float = 12.0
    attempt: int = 1
    outcome: str = "ok"


class AuditedMemory(MemoryProvider):
    """The memory fake, reporting each call to the client hook as the HTTP clients do."""

    hook: Callable[[Any], None] | None = None

    def create_pass(self, **kwargs: Any) -> Any:
        if self.hook is not None:
            self.hook(Attempt("create_pass"))
        return super().create_pass(**kwargs)


def test_one_trace_from_the_receiver_to_the_provider_call(
    spans: InMemorySpanExporter, db: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        database_url=db.url, sources={"crm": {"secret": SECRET}}, sync={"coalesce_window_ms": 0}
    )
    enqueue = CapturingEnqueue()
    body = event_body("evt_trace")
    # A sender that already traces: the receiver continues its trace.
    sender_trace = "0af7651916cd43dd8448eb211c80319c"
    incoming = {"traceparent": f"00-{sender_trace}-b7ad6b7169203331-01"}
    with TestClient(create_app(settings, db, enqueue, BrokerPing())) as client:
        headers = signed_headers(body, msg_id=f"msg_{uuid.uuid4().hex}") | incoming
        assert client.post("/webhooks/crm", content=body, headers=headers).status_code == 202
    [(ledger_id, carried)] = enqueue.headers.items()
    assert carried["traceparent"].split("-")[1] == sender_trace

    provider = AuditedMemory()
    provider.hook = AuditRecorder(db, provider="acct").on_attempt
    ctx = SyncContext(settings, provider, TemplateResolver(provider))
    set_runtime(Runtime(settings=settings, db=db, sync=ctx))
    try:
        result = jobs.process_event.apply(args=[ledger_id], headers=carried).get()
    finally:
        reset_runtime()
    assert result == "loyalty:created"

    by_name = {s.name: s for s in spans.get_finished_spans()}
    receive = by_name["POST /webhooks/crm"]
    ledger = by_name["ledger.record"]
    task = by_name["passsync.process_event"]
    call = by_name["provider create_pass"]
    assert {s.context.trace_id for s in (receive, ledger, task, call)} == {int(sender_trace, 16)}
    assert ledger.parent is not None and ledger.parent.span_id == receive.context.span_id
    assert task.parent is not None and task.parent.span_id == ledger.context.span_id
    assert call.parent is not None and call.parent.span_id == task.context.span_id
    assert task.attributes is not None and task.attributes["event_id"] == ledger_id
    assert call.attributes is not None and call.attributes["http.response.status_code"] == 200
    assert call.end_time is not None and call.start_time is not None
    assert call.end_time - call.start_time == 12_000_000


def test_the_trace_headers_travel_in_the_celery_message(
    spans: InMemorySpanExporter, make_settings: Callable[..., Settings]
) -> None:
    saved = celery_app.conf.get("broker_url"), celery_app.conf.get("broker_transport_options")
    configure(make_settings(broker_url="memory://"))
    try:
        with tracing.span("receive"):
            carrier = tracing.current_carrier()
        assert carrier is not None
        with tracing.carriers({7: carrier, 8: carrier}):
            jobs.dispatch_events([7, 8])  # one fan-out message carrying both ids' headers
        with celery_app.connection_for_read() as conn:
            queue = conn.SimpleQueue("realtime")
            message = queue.get(timeout=2)
            fanout = message.decode()
            message.ack()
            queue.close()
        args, kwargs, _embed = fanout
        assert args == [[7, 8]]
        assert kwargs == {"traces": {"7": carrier, "8": carrier}}
        # The fan-out task publishes each id's task with the headers on the message itself.
        jobs.dispatch_events_task.run([7, 8], traces=kwargs["traces"])
        with celery_app.connection_for_read() as conn:
            queue = conn.SimpleQueue("realtime")
            got = [queue.get(timeout=2) for _ in range(2)]
            for message in got:
                message.ack()
            queue.close()
        assert [m.headers["traceparent"] for m in got] == [carrier["traceparent"]] * 2
        assert [m.headers["argsrepr"] for m in got] == ["[7]", "[8]"]
    finally:
        celery_app.conf.update(broker_url=saved[0], broker_transport_options=saved[1])


def test_tracing_off_records_and_carries_nothing(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    assert not tracing.enabled()
    with tracing.span("anything"):
        assert tracing.current_carrier() is None
    with tracing.carriers({}):
        assert tracing.headers_for(1) == {}
    assert tracing.headers_of({"traceparent": "00-x-y-01"}) is None
    assert json.dumps(tracing.carriers_now()) == "{}"
