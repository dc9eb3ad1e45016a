"""GET /api/audit: read scope, filters, keyset paging with a capped limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.audit.helpers import entry, seed
from worker.db import Database

from .conftest import READ_TOKEN

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def ids(client: TestClient, **params: str | int) -> list[int]:
    response = client.get("/api/audit", params=params, headers=READ)
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["entries"]]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer unknown-token"], ids=["missing", "unknown"]
)
def test_without_a_known_token_it_is_401_and_shows_nothing(
    client: TestClient, db: Database, authorization: str | None
) -> None:
    seed(db, [entry()])
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/api/audit", headers=headers)
    assert response.status_code == 401
    assert "entries" not in response.json()


def test_a_read_token_sees_every_field_newest_first(client: TestClient, db: Database) -> None:
    # Given two rows
    seed(db, [entry(), entry(action="create_pass", pass_ref=None, status=None, outcome="timeout")])
    # When listed
    response = client.get("/api/audit", headers=READ)
    # Then both come back, newest first, with every column and no next page
    assert response.status_code == 200
    body = response.json()
    assert (body["limit"], body["next_before"]) == (50, None)
    assert body["entries"][0] == {
        "id": 2,
        "at": "2026-11-01T12:00:00Z",
        "provider": "passcreator",
        "action": "create_pass",
        "method": "PATCH",
        "path": "/api/v3/pass/{id}",
        "pass_ref": None,
        "status": None,
        "duration_ms": 10.0,
        "attempt": 1,
        "outcome": "timeout",
        "actor_kind": "event",
        "actor_id": "1",
    }
    assert [e["id"] for e in body["entries"]] == [2, 1]


def test_filters(client: TestClient, db: Database) -> None:
    seed(
        db,
        [
            entry(at=T0, action="list_templates", actor_kind="system", actor_id="passsync"),
            entry(at=T0 + timedelta(minutes=1), outcome="server_error", pass_ref="p-9"),
            entry(at=T0 + timedelta(minutes=2), actor_kind="admin", actor_id="ops"),
        ],
    )
    assert ids(client, action="list_templates") == [1]
    assert ids(client, outcome="server_error") == [2]
    assert ids(client, pass_ref="p-9") == [2]
    assert ids(client, actor_kind="admin", actor_id="ops") == [3]
    assert ids(client, actor_kind="event") == [2]
    # a naive time is read as UTC; since is inclusive, until exclusive
    assert ids(client, since="2026-11-01T12:01:00") == [3, 2]
    assert ids(client, until="2026-11-01T12:01:00+00:00") == [1]
    assert ids(client, action="nothing-like-this") == []


def test_keyset_paging_follows_next_before(client: TestClient, db: Database) -> None:
    seed(db, [entry(attempt=n) for n in range(1, 6)])
    first = client.get("/api/audit", params={"limit": 2}, headers=READ).json()
    second = client.get(
        "/api/audit", params={"limit": 2, "before": first["next_before"]}, headers=READ
    ).json()
    third = client.get(
        "/api/audit", params={"limit": 2, "before": second["next_before"]}, headers=READ
    ).json()
    pages = [[e["id"] for e in page["entries"]] for page in (first, second, third)]
    assert pages == [[5, 4], [3, 2], [1]]
    assert third["next_before"] is None


@pytest.mark.parametrize(
    "params",
    [{"limit": 501}, {"limit": 0}, {"actor_kind": "robot"}, {"before": 0}, {"since": "soon"}],
)
def test_invalid_parameters_are_422(
    client: TestClient, db: Database, params: dict[str, str | int]
) -> None:
    assert client.get("/api/audit", params=params, headers=READ).status_code == 422


def test_stats_per_account_and_action(client: TestClient, db: Database) -> None:
    now = datetime.now(UTC)
    seed(
        db,
        [
            entry(at=now, provider="a", duration_ms=10.0),
            entry(at=now, provider="a", duration_ms=30.0, outcome="timeout", status=None),
            entry(at=now - timedelta(days=2), provider="a"),
        ],
    )
    assert client.get("/api/audit/stats").status_code == 401
    response = client.get("/api/audit/stats", params={"since": "1h"}, headers=READ)
    assert response.status_code == 200, response.text
    assert response.json()["actions"] == [
        {
            "account": "a",
            "action": "update_pass",
            "calls": 2,
            "success_rate": 0.5,
            "errors": {"timeout": 1},
            "p50_ms": 20.0,
            "p99_ms": 29.8,
        }
    ]
    other = client.get("/api/audit/stats", params={"account": "b"}, headers=READ)
    assert other.json()["actions"] == []
    bad = client.get("/api/audit/stats", params={"since": "soon"}, headers=READ)
    assert bad.status_code == 422
