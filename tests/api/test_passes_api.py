"""GET /api/passes: each customer's passes with status and links, for CRMs that pull."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import READ_TOKEN, WRITE_TOKEN
from worker.db import Database
from worker.sync.models import PassMapping

AUTH = {"authorization": f"Bearer {READ_TOKEN}"}


def mapping(customer: str, key: str, pass_id: str | None, status: str = "active") -> PassMapping:
    return PassMapping(
        provider="passcreator",
        customer_id=customer,
        pass_key=key,
        user_provided_id=f"passsync-{key}-{customer}",
        provider_pass_id=pass_id,
        template_id="tpl-1" if pass_id else None,
        status=status,
        download_page=f"https://example.test/p/{pass_id}" if pass_id else None,
        iphone_uri=f"https://example.test/p/{pass_id}.pkpass" if pass_id else None,
        android_uri=None,
        last_event_id="evt-9" if pass_id else None,
        last_event_at=datetime(2026, 1, 5, tzinfo=UTC) if pass_id else None,
    )


@pytest.fixture
def stored(db: Database) -> Iterator[None]:
    with db.session() as session:
        session.add_all(
            [
                mapping("cust/1", "welcome", "p2", "voided"),
                mapping("cust/1", "loyalty", "p1"),
                mapping("cust-2", "loyalty", None, "new"),
            ]
        )
    yield


def test_one_customers_passes_with_status_and_links(client: TestClient, stored: None) -> None:
    answer = client.get("/api/passes/cust/1", headers=AUTH)
    assert answer.status_code == 200
    body = answer.json()
    assert body["customer_id"] == "cust/1"
    assert [(p["pass_key"], p["pass_id"], p["status"]) for p in body["passes"]] == [
        ("loyalty", "p1", "active"),
        ("welcome", "p2", "voided"),
    ]
    assert body["passes"][0] == {
        "customer_id": "cust/1",
        "pass_key": "loyalty",
        "account": "passcreator",  # the account holding the pass
        "provider": "passcreator",  # its platform (the row has no kind: the account's name)
        "pass_id": "p1",
        "user_provided_id": "passsync-loyalty-cust/1",
        "template_id": "tpl-1",
        "status": "active",
        "links": {
            "download_page": "https://example.test/p/p1",
            "iphone": "https://example.test/p/p1.pkpass",
            "android": None,
        },
        "last_event_id": "evt-9",
    }


def test_the_query_form_gives_the_same_passes(client: TestClient, stored: None) -> None:
    by_path = client.get("/api/passes/cust/1", headers=AUTH).json()["passes"]
    answer = client.get("/api/passes", params={"customer_id": "cust/1"}, headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"passes": by_path, "limit": 50, "offset": 0}


def test_a_pass_being_issued_shows_as_new_without_links(client: TestClient, stored: None) -> None:
    (only,) = client.get("/api/passes/cust-2", headers=AUTH).json()["passes"]
    assert (only["status"], only["pass_id"], only["links"]["download_page"]) == ("new", None, None)


def test_an_unknown_customer_is_404_by_path_and_empty_by_query(
    client: TestClient, stored: None
) -> None:
    assert client.get("/api/passes/nobody", headers=AUTH).status_code == 404
    answer = client.get("/api/passes", params={"customer_id": "nobody"}, headers=AUTH)
    assert answer.json()["passes"] == []


def test_without_a_customer_every_pass_is_listed_in_pages(client: TestClient, stored: None) -> None:
    first = client.get("/api/passes", params={"limit": 2}, headers=AUTH).json()["passes"]
    rest = client.get("/api/passes", params={"limit": 2, "offset": 2}, headers=AUTH).json()
    assert [(p["customer_id"], p["pass_key"]) for p in first + rest["passes"]] == [
        ("cust-2", "loyalty"),
        ("cust/1", "loyalty"),
        ("cust/1", "welcome"),
    ]


def test_a_token_is_required(client: TestClient, stored: None) -> None:
    assert client.get("/api/passes/cust/1").status_code == 401
    assert client.get("/api/passes", headers={"authorization": "Bearer nope"}).status_code == 401
    writer = {"authorization": f"Bearer {WRITE_TOKEN}"}
    assert client.get("/api/passes/cust/1", headers=writer).status_code == 200
