"""An app wired to the test database, a recording enqueue and signed requests."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.signatures import sign

SECRET = "whsec_" + base64.b64encode(b"current-secret-for-tests-32-byte").decode()
# Rotated-out secrets: one in raw base64 (no prefix), as the library also accepts.
OLD_SECRET = base64.b64encode(b"previous-secret-for-tests-32byte").decode()
OLDER_SECRET = "whsec_" + base64.b64encode(b"older-secret-for-tests-32-bytes!").decode()
UNKNOWN_SECRET = "whsec_" + base64.b64encode(b"a-secret-nobody-configured-32-by").decode()
READ_TOKEN = "read-token-0123456789"
WRITE_TOKEN = "write-token-0123456789"


class RecordingEnqueue:
    """A fake `enqueue` that records every call; it can be told to fail like a dead broker."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.error: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, ids: list[int]) -> None:
        with self._lock:
            self.calls.append(list(ids))
        if self.error is not None:
            raise self.error

    def wait_for(self, count: int, timeout: float = 5.0) -> list[list[int]]:
        """The calls once there are `count` of them: the receiver publishes after answering."""
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # room for an extra (wrong) call to show up
        return list(self.calls)


class BrokerPing:
    def __init__(self) -> None:
        self.error: Exception | None = None

    def __call__(self) -> None:
        if self.error is not None:
            raise self.error


def event(event_id: str = "evt_1", **overrides: Any) -> dict[str, Any]:
    """A valid canonical event as a sender would post it."""
    body: dict[str, Any] = {
        "id": event_id,
        "type": "customer.updated",
        "occurred_at": "2026-11-20T10:00:00+00:00",
        "customer": {"id": "cus_42", "email": "ada@example.com", "first_name": "Ada"},
        "data": {"points": 120},
    }
    body.update(overrides)
    return body


def signed_headers(
    body: bytes,
    secret: str = SECRET,
    *,
    msg_id: str = "msg_1",
    timestamp: int | None = None,
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = sign(secret, msg_id, stamp, body)
    headers["content-type"] = "application/json"
    return headers


def rows(db: Database) -> list[InboundEvent]:
    with db.session() as session:
        return list(session.scalars(select(InboundEvent).order_by(InboundEvent.id)))


def row_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(InboundEvent)) or 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unreachable_database(db: Database, tmp_path: Any) -> Database:
    """A Database of the same backend that cannot be opened."""
    if db.is_sqlite:
        return Database(f"sqlite:///{tmp_path}")  # a directory, not a file
    return Database(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nowhere")


@pytest.fixture
def db_down_client(
    settings: Settings,
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
    tmp_path: Any,
) -> Iterator[TestClient]:
    """A receiver whose database (same backend) cannot be opened; the broker works."""
    broken = unreachable_database(db, tmp_path)
    try:
        with TestClient(create_app(settings, broken, enqueue, broker)) as client:
            yield client
    finally:
        broken.dispose()


@pytest.fixture
def settings_factory(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        overrides.setdefault(
            "sources",
            {
                "crm": {"secret": SECRET, "previous_secrets": f"{OLD_SECRET} {OLDER_SECRET}"},
                "pos": {},  # no secret configured: every request is refused
            },
        )
        overrides.setdefault(
            "admin_tokens",
            {
                "viewer": {"scopes": ["read"], "secret": READ_TOKEN},
                "operator": {"scopes": ["read", "write"], "secret": WRITE_TOKEN},
                "disabled": {"scopes": ["read", "write"]},
            },
        )
        return make_settings(**overrides)

    return build


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
def enqueue() -> RecordingEnqueue:
    return RecordingEnqueue()


@pytest.fixture
def broker() -> BrokerPing:
    return BrokerPing()


@pytest.fixture
def app(settings: Settings, db: Database, enqueue: RecordingEnqueue, broker: BrokerPing) -> FastAPI:
    return create_app(settings, db, enqueue, broker)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client
