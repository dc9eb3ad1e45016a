"""An API with a callback token and a read token, and helpers to seed passes and callbacks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import SECRET, BrokerPing, RecordingEnqueue
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.sync.models import PassMapping, PassStatus

CALLBACK_TOKEN = "callback-token-0123456789"
READ_TOKEN = "adoption-read-token-0123"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        sources={"pos": {"secret": SECRET}},
        admin_tokens={"viewer": {"scopes": ["read"], "secret": READ_TOKEN}},
        callbacks={"secret": CALLBACK_TOKEN},
        usage={"rules": [{"pass_key": "loyalty", "mode": "visit"}]},
    )


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing())
    with TestClient(app) as test_client:
        yield test_client


def seed_mapping(
    db: Database,
    customer: str,
    key: str,
    pass_id: str,
    *,
    template: str = "tpl-loyalty",
    issued: datetime | None = None,
) -> None:
    with db.session() as session:
        session.add(
            PassMapping(
                provider="passcreator",
                customer_id=customer,
                pass_key=key,
                user_provided_id=f"passsync-{key}-{customer}",
                provider_pass_id=pass_id,
                template_id=template,
                status=PassStatus.ACTIVE,
                created_at=issued or datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
            )
        )


def callback(
    client: TestClient, event: str, payload: dict[str, Any], token: str = CALLBACK_TOKEN
) -> Any:
    return client.post(
        "/providers/passcreator/callbacks",
        params={"token": token, "event": event},
        content=json.dumps(payload).encode(),
        headers={"content-type": "application/json"},
    )


def steps(client: TestClient, **params: Any) -> dict[str, int]:
    response = client.get("/api/adoption", params=params, headers=READ)
    assert response.status_code == 200, response.text
    return {s["step"]: s["count"] for s in response.json()["steps"]}
