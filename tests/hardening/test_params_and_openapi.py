"""L2 (bounded integers) and the documented status codes with one 422 shape."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.hardening.conftest import READ, WRITE

HUGE = str(2**63)

ROUTES = [
    ("GET", f"/api/events/{HUGE}", READ),
    ("POST", f"/api/events/{HUGE}/replay", WRITE),
    ("GET", f"/api/events?offset={HUGE}", READ),
    ("GET", f"/api/campaigns/{HUGE}", READ),
    ("GET", f"/api/campaigns/{HUGE}/report", READ),
    ("POST", f"/api/campaigns/{HUGE}/start", WRITE),
    ("GET", f"/api/outbox/{HUGE}", READ),
    ("POST", f"/api/outbox/{HUGE}/redeliver", WRITE),
    ("GET", f"/api/outbox?offset={HUGE}", READ),
    ("GET", f"/api/passes?offset={HUGE}", READ),
    ("GET", f"/api/audit?before={HUGE}", READ),
    ("GET", f"/api/adoption?campaign={HUGE}", READ),
]


@pytest.mark.parametrize(("method", "url", "headers"), ROUTES)
def test_an_integer_beyond_64_bits_is_422(
    client: TestClient, method: str, url: str, headers: dict[str, str]
) -> None:
    response = client.request(method, url, headers=headers)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert set(error) == {"loc", "msg", "type"}
    assert error["type"] == "less_than_equal"


@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        ("GET", f"/api/events/{2**63 - 1}", READ),
        ("GET", f"/api/events?offset={2**63 - 1}", READ),
        ("GET", f"/api/campaigns/{2**63 - 1}", READ),
    ],
)
def test_the_largest_64_bit_integer_is_answered(
    client: TestClient, method: str, url: str, headers: dict[str, str]
) -> None:
    response = client.request(method, url, headers=headers)
    assert response.status_code in (200, 404), response.text


def test_every_422_has_one_shape(client: TestClient) -> None:
    answers = [
        client.post("/api/events/replay", headers=WRITE),  # the route's own check
        client.get("/api/events?limit=0", headers=READ),  # FastAPI's validation
        client.post("/api/campaigns", json={"name": ""}, headers=WRITE),  # a body model
        client.get("/api/outbox?type=nope", headers=READ),
    ]
    for response in answers:
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert isinstance(detail, list) and detail
        for error in detail:
            assert set(error) == {"loc", "msg", "type"}


def test_invalid_json_to_a_model_route_is_400(client: TestClient) -> None:
    response = client.post(
        "/api/campaigns", content=b"{nope", headers={**WRITE, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "body is not valid JSON"}


def _documented(app: FastAPI) -> dict[tuple[str, str], set[str]]:
    paths = app.openapi()["paths"]
    return {
        (method.upper(), path): set(operation["responses"])
        for path, operations in paths.items()
        for method, operation in operations.items()
    }


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("GET", "/api/events", {"200", "401", "403", "422", "503"}),
        ("GET", "/api/events/{event_pk}", {"200", "401", "403", "404", "422", "503"}),
        ("POST", "/api/events/{event_pk}/replay", {"202", "401", "403", "404", "413", "503"}),
        ("POST", "/api/campaigns", {"201", "400", "401", "403", "413", "422", "503"}),
        ("POST", "/api/campaigns/{campaign_id}/{verb}", {"404", "409", "413", "422"}),
        ("POST", "/webhooks/{source}", {"202", "400", "401", "404", "413", "422", "503"}),
        ("POST", "/scans/{source}", {"202", "400", "401", "404", "413", "422", "503"}),
        ("POST", "/providers/{account}/callbacks", {"202", "400", "401", "404", "413", "422"}),
        ("GET", "/dashboard", {"200", "401", "403", "503"}),
        ("GET", "/healthz", {"200"}),
    ],
)
def test_the_error_codes_are_in_the_openapi_document(
    app: FastAPI, method: str, path: str, codes: set[str]
) -> None:
    assert codes <= _documented(app)[(method, path)]


def test_every_error_response_has_the_documented_shape(app: FastAPI) -> None:
    schema = app.openapi()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if int(code) < 400:
                    continue
                ref = response["content"]["application/json"]["schema"]["$ref"]
                wanted = "ValidationErrorOut" if code == "422" else "ErrorOut"
                assert ref.endswith("/" + wanted), (method, path, code, ref)


@pytest.mark.parametrize(
    "url", ["/api/passes?customer_id=a%00b", "/api/passes/a%00b", "/api/outbox?destination=%00"]
)
def test_a_nul_character_in_the_url_is_400(client: TestClient, url: str) -> None:
    response = client.get(url, headers=READ)
    assert response.status_code == 400
    assert response.json() == {"detail": "the URL holds a NUL character"}
