"""M2, L3, L4, L5: the signed receivers answer every bad body with a 4xx and store nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.hardening.conftest import (
    CALLBACK_TOKEN,
    CALLBACKS,
    event,
    nested,
    nothing_stored,
    post_signed,
    scan,
    signed,
    stored,
)
from worker.db import Database

DEEP_TEXT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000  # beyond the JSON parser's recursion


def post_callback(client: TestClient, body: bytes, **headers: str) -> Any:
    return client.post(
        CALLBACKS,
        params={"token": CALLBACK_TOKEN, "event": "pass_created"},
        content=body,
        headers={"content-type": "application/json", **headers},
    )


# -- M2: nesting and unstorable text fail validation (422), only for their own request --------


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        (event(data=nested(300)), ["body", "data"]),
        (event(data=nested(40)), ["body", "data"]),
        (event(customer={"id": "c", "attributes": nested(64)}), ["body", "customer", "attributes"]),
        (event(data={"k": "nul\x00byte"}), ["body", "data"]),
        (event(data={"nul\x00key": 1}), ["body", "data"]),
        (event(data={"big": 2**64}), ["body", "data"]),
        (event(data={"many": list(range(30_000))}), ["body", "data"]),
        (event("evt\x00"), ["body", "id"]),
        (event(customer={"id": "cus\x00"}), ["body", "customer", "id"]),
    ],
)
def test_a_signed_event_out_of_bounds_is_422(
    client: TestClient, db: Database, payload: dict[str, Any], loc: list[str]
) -> None:
    response = post_signed(client, "/webhooks/crm", payload)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert nothing_stored(db)


def test_a_lone_surrogate_is_422(client: TestClient, db: Database) -> None:
    body = b'{"id":"e1","type":"customer.updated","occurred_at":"2026-11-20T10:00:00Z",'
    body += b'"customer":{"id":"c"},"data":{"k":"\\ud800"}}'
    response = post_signed(client, "/webhooks/crm", body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "data"]
    assert nothing_stored(db)


def test_a_nesting_just_within_bounds_is_stored(client: TestClient, db: Database) -> None:
    response = post_signed(client, "/webhooks/crm", event(data=nested(30)))
    assert response.status_code == 202
    assert stored(db)["inbound_events"] == 1


# -- L3: anything unparsable is 400 on every signed receiver --------------------------------


@pytest.mark.parametrize(
    "body",
    [DEEP_TEXT, b"[" * 100_000, b"{", b'{"amount": NaN}', b"1" * 5000, b"[]"],
)
def test_an_unparsable_body_is_400_on_the_scan_receiver(
    client: TestClient, db: Database, body: bytes
) -> None:
    response = client.post("/scans/crm", content=body, headers=signed(body))
    assert response.status_code == 400
    assert nothing_stored(db)


@pytest.mark.parametrize("body", [DEEP_TEXT, b"[" * 100_000, b"{", b"\xff", b"[1]", b"NaN"])
def test_an_unparsable_body_is_400_on_the_callbacks_route(
    client: TestClient, db: Database, body: bytes
) -> None:
    response = post_callback(client, body)
    assert response.status_code == 400
    assert nothing_stored(db)


def test_a_callback_nested_too_deep_is_422(client: TestClient, db: Database) -> None:
    response = post_callback(client, json.dumps({"identifier": "P1", "x": nested(300)}).encode())
    assert response.status_code == 422
    assert nothing_stored(db)


# -- L4: the scan receiver is as strict as the webhook receiver -----------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"id":"s1","scanned_at":"2026-11-20T10:00:00Z","barcode":"b","amount":"12"}', "amount"),
        (b'{"id":"s1","scanned_at":"2026-11-20T10:00:00Z","barcode":"b","amount":true}', "amount"),
        (b'{"id":"s1","scanned_at":"2026-11-20T10:00:00Z","barcode":"b","amount":1e300}', "amount"),
        (json.dumps(scan(scanned_at="1970-01-01T00:00:00Z")).encode(), "scanned_at"),
        (json.dumps(scan(scanned_at="2999-01-01T00:00:00Z")).encode(), "scanned_at"),
        (json.dumps(scan(attributes=nested(100))).encode(), "attributes"),
        (json.dumps(scan(location="Berlin\x00")).encode(), "location"),
    ],
)
def test_a_loose_scan_is_422(client: TestClient, db: Database, body: bytes, loc: str) -> None:
    response = post_signed(client, "/scans/crm", body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", loc]
    assert nothing_stored(db)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_scan_amount_nan_or_infinity_is_400(
    client: TestClient, db: Database, constant: bytes
) -> None:
    body = b'{"id":"s1","scanned_at":"2026-11-20T10:00:00Z","barcode":"b","amount":' + constant
    response = post_signed(client, "/scans/crm", body + b"}")
    assert response.status_code == 400
    assert nothing_stored(db)


def test_a_strict_scan_is_stored(client: TestClient, db: Database) -> None:
    response = post_signed(client, "/scans/crm", scan(amount=12))
    assert response.status_code == 202
    assert stored(db)["scans"] == 1


# -- L5: a stored string longer than its column is refused at the edge ----------------------


def test_a_callback_id_longer_than_its_column_is_422(client: TestClient, db: Database) -> None:
    body = json.dumps({"identifier": "P1"}).encode()
    response = post_callback(client, body, **{"webhook-id": "x" * 60_000})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "webhook-id"]
    assert nothing_stored(db)


@pytest.mark.parametrize(
    ("field", "length"),
    [("event_type", 129), ("rule", 256), ("template", 256), ("name", 201)],
)
def test_a_campaign_string_longer_than_its_column_is_422(
    client: TestClient, db: Database, field: str, length: int
) -> None:
    body = {"name": "n", "event_type": "campaign.sent", "recipients": [{"customer_id": "c"}]}
    body[field] = "x" * length
    response = client.post(
        "/api/campaigns", json=body, headers={"Authorization": "Bearer hardening-write-token-0123"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert nothing_stored(db)
