"""The same event delivered concurrently to several real API processes is recorded once.

Each server below has its own app and so its own group-commit queue, like separate uvicorn
workers: the three copies race in three separate transactions.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import event as sa_event

from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database

from .conftest import BrokerPing, RecordingEnqueue, event, rows, signed_headers

DELIVERIES = 3


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free port, in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def live_urls(
    settings: Settings, db: Database, enqueue: RecordingEnqueue, broker: BrokerPing
) -> Iterator[list[str]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(serve(create_app(settings, db, enqueue, broker)))
            for _ in range(DELIVERIES)
        ]


def test_same_event_delivered_concurrently_is_recorded_and_enqueued_once(
    live_urls: list[str], db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given one signed delivery, and a database that holds every request at connection
    # checkout until all three are inside the ledger insert at the same time
    body = json.dumps(event("evt_1")).encode()
    headers = signed_headers(body)
    in_flight = threading.Barrier(DELIVERIES, timeout=20)

    def hold(*_: Any) -> None:
        in_flight.wait()

    sa_event.listen(db.engine, "checkout", hold)
    start = threading.Barrier(DELIVERIES, timeout=20)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def deliver(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            start.wait()
            response = http.post("/webhooks/crm", content=body, headers=headers)
        with lock:
            answers.append(response)

    # When three copies arrive at once
    threads = [threading.Thread(target=deliver, args=(url,)) for url in live_urls]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sa_event.remove(db.engine, "checkout", hold)

    # Then all are acknowledged, exactly one is new, one row exists and one enqueue happened
    assert not in_flight.broken
    assert sorted(a.status_code for a in answers) == [202, 202, 202]
    assert sorted(json.dumps(a.json(), sort_keys=True) for a in answers) == [
        '{"accepted": 0, "duplicates": 1}',
        '{"accepted": 0, "duplicates": 1}',
        '{"accepted": 1, "duplicates": 0}',
    ]
    [row] = rows(db)
    assert enqueue.wait_for(1) == [[row.id]]
