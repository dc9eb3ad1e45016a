"""H1: no admin route reads a byte of the body before the token is known; one body limit."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.hardening.asgi import call
from tests.hardening.conftest import READ, WRITE, nothing_stored
from worker.api.campaigns import MAX_INLINE_RECIPIENTS
from worker.db import Database

HUNDRED_MB = str(100 * 1024 * 1024)
MB = b"x" * (1024 * 1024)

ADMIN_WRITES = [
    "/api/campaigns",
    "/api/campaigns/1/start",
    "/api/campaigns/1/recipients",
    "/api/events/replay",
    "/api/events/1/replay",
    "/api/outbox/1/redeliver",
    "/api/outbox/destinations/x/redeliver",
]


@pytest.mark.parametrize("path", ADMIN_WRITES)
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([], 401),
        ([("authorization", "Bearer not-a-token")], 401),
        ([("authorization", "Basic abc")], 401),
        ([("authorization", READ["Authorization"])], 403),
    ],
)
def test_an_admin_route_answers_without_reading_the_body(
    app: FastAPI, db: Database, path: str, headers: list[tuple[str, str]], status: int
) -> None:
    # Given a 100 MB body announced by a client without a (write) token
    sent = [("content-type", "application/json"), ("content-length", HUNDRED_MB), *headers]
    # When it is posted to an admin route
    answer = call(app, "POST", path, headers=sent, chunks=[MB] * 100)
    # Then the answer comes before a single read of the body, and nothing is stored
    assert answer.status == status
    assert answer.reads == 0
    assert answer.headers["connection"] == "close"
    assert nothing_stored(db)


def test_an_unannounced_large_body_is_refused_after_the_limit(app: FastAPI, db: Database) -> None:
    # Given a write token and a chunked body (no Content-Length) of 100 MB
    headers = [("content-type", "application/json"), ("authorization", WRITE["Authorization"])]
    # When it is posted
    answer = call(app, "POST", "/api/campaigns", headers=headers, chunks=[MB] * 100)
    # Then 413 once the count passes the 1 MB limit: two chunks read, not a hundred
    assert answer.status == 413
    assert answer.json() == {"detail": "body exceeds 1048576 bytes"}
    assert answer.reads == 2
    assert nothing_stored(db)


@pytest.mark.parametrize("path", ["/api/campaigns", "/scans/crm", "/webhooks/crm"])
def test_an_announced_large_body_is_refused_unread_on_every_route(app: FastAPI, path: str) -> None:
    headers = [("content-length", str(2 * 1024 * 1024)), ("authorization", WRITE["Authorization"])]
    answer = call(app, "POST", path, headers=headers, chunks=[MB, MB])
    assert answer.status == 413
    assert answer.reads == 0


def test_a_campaign_with_too_many_inline_recipients_is_422(
    client: TestClient, db: Database
) -> None:
    recipients = [{"customer_id": str(n)} for n in range(MAX_INLINE_RECIPIENTS + 1)]
    body = json.dumps({"name": "big", "template": "T", "recipients": recipients})
    assert len(body) < 1024 * 1024
    response = client.post(
        "/api/campaigns", content=body, headers={**WRITE, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "recipients"]
    assert response.json()["detail"][0]["type"] == "too_long"
    assert nothing_stored(db)
