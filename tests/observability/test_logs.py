"""JSON log lines parse, and carry the event id from the receiver's line to the worker's."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import SECRET, BrokerPing, RecordingEnqueue, signed_headers
from tests.observability.test_metrics import event_body
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.observability import logs
from worker.providers.memory import MemoryProvider
from worker.sync.engine import SyncContext
from worker.sync.templates import TemplateResolver
from worker.tasks import jobs
from worker.tasks.runtime import Runtime, reset_runtime, set_runtime


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    logs.configure_logging("INFO", fmt="json", stream=out)
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logs.clear()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_the_event_id_rides_from_the_receiver_line_to_the_worker_line(
    db: Database, make_settings: Callable[..., Settings], stream: io.StringIO
) -> None:
    settings = make_settings(
        database_url=db.url, sources={"crm": {"secret": SECRET}}, sync={"coalesce_window_ms": 0}
    )
    enqueue = RecordingEnqueue()
    body = event_body("evt_log_1")
    with TestClient(create_app(settings, db, enqueue, BrokerPing())) as client:
        headers = signed_headers(body, msg_id=f"msg_{uuid.uuid4().hex}")
        assert client.post("/webhooks/crm", content=body, headers=headers).status_code == 202
    [[ledger_id]] = enqueue.wait_for(1)

    provider = MemoryProvider()
    ctx = SyncContext(settings, provider, TemplateResolver(provider))
    set_runtime(Runtime(settings=settings, db=db, sync=ctx))
    try:
        jobs.process_event.apply(args=[ledger_id])
    finally:
        reset_runtime()

    parsed = lines(stream)  # every line is one JSON object
    received = [p for p in parsed if p["logger"] == "passsync.api.webhooks"]
    assert [(p["event_id"], p["source_event_id"], p["level"]) for p in received] == [
        (ledger_id, "evt_log_1", "info")
    ]
    handled = [p for p in parsed if p["logger"] == "passsync.tasks"]
    assert len(handled) == 1, parsed
    line = handled[0]
    assert line["event_id"] == ledger_id
    assert line["actor"] == f"event:{ledger_id}"
    assert line["account"] == settings.sync.default_account
    assert line["task_id"]  # bound by the task_prerun signal
    assert line["event"].startswith(f"event {ledger_id} handled")
    assert "timestamp" in line


def test_context_ends_with_its_task_and_never_leaks(stream: io.StringIO) -> None:
    log = logging.getLogger("passsync.test")
    with logs.context(campaign_id=7):
        log.warning("inside")
    log.warning("outside")
    inside, outside = lines(stream)
    assert inside["campaign_id"] == 7
    assert "campaign_id" not in outside


def test_third_party_loggers_are_quiet_by_default(stream: io.StringIO) -> None:
    logging.getLogger("celery.worker.strategy").info("Task received")
    logging.getLogger("kombu.connection").info("connected")
    logging.getLogger("passsync.x").info("ours")
    assert [p["event"] for p in lines(stream)] == ["ours"]


def test_console_format_is_one_plain_line(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    try:
        logs.configure_logging("INFO", fmt="console", stream=out)
        logging.getLogger("passsync.y").info("hello %s", "there")
    finally:
        logging.getLogger().handlers.clear()
    text = out.getvalue()
    assert "hello there" in text and not text.lstrip().startswith("{")
