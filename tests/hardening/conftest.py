"""An app with a signed source, read and write tokens and a callback token; row counters."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.api.conftest import SECRET, BrokerPing, RecordingEnqueue
from worker.adoption.models import AdoptionEvent
from worker.api.app import create_app
from worker.campaigns.models import Campaign, CampaignRecipient
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.signatures import sign
from worker.scans.models import Scan

READ_TOKEN = "hardening-read-token-0123"
WRITE_TOKEN = "hardening-write-token-0123"
CALLBACK_TOKEN = "hardening-callback-token-0123"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}
CALLBACKS = "/providers/passcreator/callbacks"
STORED = (InboundEvent, Scan, AdoptionEvent, Campaign, CampaignRecipient)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        sources={"crm": {"secret": SECRET}},
        admin_tokens={
            "viewer": {"scopes": ["read"], "secret": READ_TOKEN},
            "operator": {"scopes": ["read", "write"], "secret": WRITE_TOKEN},
        },
        callbacks={"secret": CALLBACK_TOKEN},
    )


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings, db, RecordingEnqueue(), BrokerPing())


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def stored(db: Database) -> dict[str, int]:
    """Rows in every table a request can write to."""
    with db.session() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in STORED
        }


def nothing_stored(db: Database) -> bool:
    return not any(stored(db).values())


def signed(body: bytes, *, msg_id: str = "msg_1", timestamp: int | None = None) -> dict[str, str]:
    headers = sign(SECRET, msg_id, int(time.time()) if timestamp is None else timestamp, body)
    headers["content-type"] = "application/json"
    return headers


def post_signed(client: TestClient, path: str, payload: Any) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(path, content=body, headers=signed(body))


def event(event_id: str = "evt_1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id,
        "type": "customer.updated",
        "occurred_at": "2026-11-20T10:00:00+00:00",
        "customer": {"id": "cus_42", "email": "ada@example.com"},
        "data": {"points": 120},
    }
    body.update(overrides)
    return body


def scan(scan_id: str = "s1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": scan_id,
        "scanned_at": "2026-11-20T10:00:00+00:00",
        "barcode": "B-1",
        "amount": 12.5,
    }
    body.update(overrides)
    return body


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value
