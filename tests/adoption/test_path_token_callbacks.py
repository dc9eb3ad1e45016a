"""Callbacks of a platform that appends its own paths to the registered base URL (Airship:
`{baseUrl}/v1/pass/install`): the token is a path segment, compared in constant time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.adoption.conftest import CALLBACK_TOKEN, READ_TOKEN
from tests.api.conftest import SECRET, BrokerPing, RecordingEnqueue
from worker.adoption.models import AdoptionEvent, PassAdoption
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database

PAYLOAD = {
    "passId": 149440311,
    "templateId": 158327,
    "serialNumber": "12345.158327_0b7a4d3c_149440311",
    "createdAt": "2026-12-04T10:00:00.000Z",
    "updatedAt": "2026-12-04T10:05:00.000Z",
    "externalId": "passsync-loyalty-cust-1",
    "platform": "ios",
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        sources={"pos": {"secret": SECRET}},
        admin_tokens={"viewer": {"scopes": ["read"], "secret": READ_TOKEN}},
        callbacks={"secret": CALLBACK_TOKEN},
        providers={"passcreator": {}, "air": {"kind": "airship"}},
    )


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing())
    with TestClient(app) as test_client:
        yield test_client


def post(client: TestClient, path: str, token: str = CALLBACK_TOKEN) -> httpx.Response:
    return client.post(
        f"/providers/air/callbacks/{token}/{path}",
        content=json.dumps(PAYLOAD).encode(),
        headers={"content-type": "application/json"},
    )


def test_an_install_at_the_appended_path_reaches_the_ledger(
    client: TestClient, db: Database
) -> None:
    answer = post(client, "v1/pass/install")
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"recorded": True, "kind": "installed"}
    # The older tutorial's path (no /v1) is read too; the same delivery is recorded once
    assert post(client, "pass/uninstall").json() == {"recorded": True, "kind": "removed"}
    assert post(client, "pass/uninstall").json()["recorded"] is False
    with db.session() as session:
        kinds = [e.kind for e in session.scalars(select(AdoptionEvent).order_by(AdoptionEvent.id))]
        state = session.scalars(select(PassAdoption)).one()
    assert kinds == ["installed", "removed"]
    assert state.provider_pass_id == "149440311"


def test_a_wrong_path_token_is_refused_and_nothing_recorded(
    client: TestClient, db: Database
) -> None:
    answer = post(client, "v1/pass/install", token="wrong-token")
    assert answer.status_code == 401
    assert post(client, "v1/pass/install", token=CALLBACK_TOKEN[:-1]).status_code == 401
    with db.session() as session:
        assert session.scalars(select(AdoptionEvent)).all() == []


def test_personalize_is_not_tracked(client: TestClient) -> None:
    answer = post(client, "v1/pass/149440311/personalize")
    assert answer.json() == {"recorded": False, "kind": None}
