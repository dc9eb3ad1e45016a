"""The sandbox's template, push, scan, webhook and statistics endpoints, and its SQLite store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from worker.providers.passcreator.sandbox.app import create_sandbox_app
from worker.providers.passcreator.sandbox.store import template_id_for
from worker.providers.passcreator.settings import SandboxSettings

KEY = "sbx-key-5678"
AUTH = {"Authorization": KEY}
LOYALTY = template_id_for("Loyalty Card")


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        client = TestClient(
            create_sandbox_app(SandboxSettings(api_key=SecretStr(KEY), **overrides))
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def sbx(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def create_pass(sbx: TestClient, upid: str = "u1", template: str = LOYALTY) -> str:
    data = {"templateId": template, "userProvidedId": upid, "enforceUniqueUserProvidedId": True}
    response = sbx.post("/api/v3/pass?async=false", json={"data": data}, headers=AUTH)
    assert response.status_code == 200
    identifier: str = response.json()["data"]["identifier"]
    return identifier


def state(sbx: TestClient, kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = sbx.get(f"/_sandbox/{kind}").json()[kind]
    return rows


# -- push --------------------------------------------------------------------------------------


def test_push_to_an_active_pass_is_204_and_recorded(sbx: TestClient) -> None:
    pid = create_pass(sbx)
    response = sbx.post(
        f"/api/pass/{pid}/sendpushnotification", json={"pushNotificationText": "Hi"}, headers=AUTH
    )
    assert response.status_code == 204
    assert state(sbx, "pushes") == [{"passId": pid, "text": "Hi"}]


@pytest.mark.parametrize("body", [{}, {"pushNotificationText": "  "}, {"pushNotificationText": 3}])
def test_push_with_empty_text_is_400_and_sends_nothing(sbx: TestClient, body: Any) -> None:
    pid = create_pass(sbx)
    response = sbx.post(f"/api/pass/{pid}/sendpushnotification", json=body, headers=AUTH)
    assert response.status_code == 400
    assert state(sbx, "pushes") == []


def test_push_to_a_voided_pass_is_400_and_to_an_unknown_one_404(sbx: TestClient) -> None:
    pid = create_pass(sbx)
    sbx.put(f"/api/pass/{pid}", json={"voided": True}, headers=AUTH)
    text = {"pushNotificationText": "Hi"}
    voided = sbx.post(f"/api/pass/{pid}/sendpushnotification", json=text, headers=AUTH)
    unknown = sbx.post("/api/pass/nobody/sendpushnotification", json=text, headers=AUTH)
    assert voided.status_code == 400
    assert voided.json()["description"] == "The pass is not active."
    assert unknown.status_code == 404
    assert state(sbx, "pushes") == []


# -- app scans ---------------------------------------------------------------------------------


def test_app_scan_with_set_voided_voids_the_pass_found_by_barcode(sbx: TestClient) -> None:
    pid = create_pass(sbx)
    barcode = sbx.get(f"/api/pass/{pid}", headers=AUTH).json()["barcodeValue"]
    body = {"appConfigurationId": "cfg", "scannedBarcodeValue": barcode, "setVoided": True}
    response = sbx.post("/api/appscan", json=body, headers=AUTH)
    assert response.status_code == 200
    scan_id = response.json()["appScanId"]
    assert sbx.get(f"/api/pass/{pid}", headers=AUTH).json()["voided"] is True
    [scan] = state(sbx, "scans")
    assert (scan["appScanId"], scan["passId"]) == (scan_id, pid)


def test_app_scan_without_configuration_or_of_an_unknown_pass_stores_nothing(
    sbx: TestClient,
) -> None:
    no_config = sbx.post("/api/appscan", json={"passId": "x"}, headers=AUTH)
    unknown = sbx.post(
        "/api/appscan", json={"appConfigurationId": "c", "passId": "nobody"}, headers=AUTH
    )
    assert (no_config.status_code, unknown.status_code) == (400, 404)
    assert state(sbx, "scans") == []


# -- templates ---------------------------------------------------------------------------------


def test_template_lifecycle(sbx: TestClient) -> None:
    # given a new template
    created = sbx.post(
        "/api/v2/pass-template", json={"name": "Promo", "type": "coupon"}, headers=AUTH
    )
    assert created.status_code == 200
    tid = created.json()["data"]["identifier"]
    assert {"identifier": tid, "name": "Promo"} in sbx.get(
        "/api/pass-template", headers=AUTH
    ).json()
    # when patched, it waits for publishing; publishing clears that
    patched = sbx.patch(f"/api/v2/pass-template/{tid}", json={"description": "d"}, headers=AUTH)
    assert patched.status_code == 200
    described = sbx.get(f"/api/v2/pass-template/{tid}/describe", headers=AUTH).json()["data"]
    assert (described["description"], described["type"]) == ("d", "coupon")
    assert described["unpublishedChanges"] is True
    sbx.post(f"/api/v2/pass-template/{tid}/publish", headers=AUTH)
    v1 = sbx.get(f"/api/pass-template/{tid}", headers=AUTH).json()
    assert (v1["identifier"], v1["unpublishedChanges"]) == (tid, False)
    # a full update replaces what was there
    sbx.post(f"/api/v2/pass-template/{tid}", json={"name": "Promo 2"}, headers=AUTH)
    replaced = sbx.get(f"/api/pass-template/{tid}", headers=AUTH).json()
    assert (replaced["name"], "description" in replaced) == ("Promo 2", False)
    # then deleted: 404 everywhere, and no pass can be made from it
    assert sbx.delete(f"/api/pass-template/{tid}", headers=AUTH).status_code == 200
    assert sbx.get(f"/api/pass-template/{tid}", headers=AUTH).status_code == 404
    assert sbx.delete(f"/api/pass-template/{tid}", headers=AUTH).status_code == 404
    assert tid not in {t["identifier"] for t in sbx.get("/api/pass-template", headers=AUTH).json()}
    data = {"data": {"templateId": tid}}
    assert sbx.post("/api/v3/pass", json=data, headers=AUTH).status_code == 400


@pytest.mark.parametrize("body", [{}, {"name": " "}, {"name": "X", "type": "poster"}, [1]])
def test_invalid_template_create_is_400_and_stores_nothing(sbx: TestClient, body: Any) -> None:
    response = sbx.post("/api/v2/pass-template", json=body, headers=AUTH)
    assert response.status_code == 400
    assert len(state(sbx, "templates")) == 3


def test_template_describe_counts_passes_and_maps_properties(sbx: TestClient) -> None:
    body = {"name": "Card", "additionalProperties": ["tier"]}
    tid = sbx.post("/api/v2/pass-template", json=body, headers=AUTH).json()["data"]["identifier"]
    create_pass(sbx, "a", template=tid)
    described = sbx.get(f"/api/pass-template/{tid}", headers=AUTH).json()
    assert described["numberOfCreatedPasses"] == 1
    assert described["dynamicFields"]["additionalProperties"] == {"tier": f"{tid}.tier"}


def test_statistics_count_created_passes_as_strings(sbx: TestClient) -> None:
    create_pass(sbx, "a")
    create_pass(sbx, "b")
    stats = sbx.get(f"/api/pass/statistics/{LOYALTY}?timeFrame=month", headers=AUTH).json()
    assert [p["noOfPasses"] for p in stats["createdPassesTimeline"]] == ["2"]
    assert stats["passesPerOperatingSystem"] == {"iOS": "0", "Android": "0", "WindowsPhone": "0"}
    assert sbx.get("/api/pass/statistics/nope", headers=AUTH).status_code == 404


# -- webhooks ----------------------------------------------------------------------------------


def test_subscribe_is_201_and_not_idempotent(sbx: TestClient) -> None:
    body = {"target_url": "https://hooks.test/a", "event": "pass_created"}
    first = sbx.post("/api/hook/subscribe", json=body, headers=AUTH)
    second = sbx.post(f"/api/hook/subscribe/{LOYALTY}", json=body, headers=AUTH)
    assert (first.status_code, second.status_code) == (201, 201)
    assert "accessToken" not in first.json()
    listed = sbx.get("/api/hook/list", headers=AUTH).json()
    assert [(h["event"], h["templateIdentifier"]) for h in listed] == [
        ("pass_created", None),
        ("pass_created", LOYALTY),
    ]


def test_subscribe_can_generate_an_access_token(sbx: TestClient) -> None:
    body = {"target_url": "https://hooks.test/a", "event": "pass_voided"}
    answer = sbx.post("/api/hook/subscribe?generateAccessToken=true", json=body, headers=AUTH)
    assert answer.json()["accessToken"] == f"sbx-{answer.json()['id']}"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/hook/subscribe", {"target_url": "https://h"}, 400),
        ("/api/hook/subscribe", {"event": "pass_created"}, 400),
        ("/api/hook/subscribe/nope", {"target_url": "https://h", "event": "pass_created"}, 404),
    ],
)
def test_invalid_subscriptions_store_nothing(
    sbx: TestClient, path: str, body: dict[str, Any], status: int
) -> None:
    assert sbx.post(path, json=body, headers=AUTH).status_code == status
    assert state(sbx, "hooks") == []


def test_pull_mode_subscription_needs_no_target(sbx: TestClient) -> None:
    body = {"event": "pass_created", "pullMode": True}
    assert sbx.post("/api/hook/subscribe", json=body, headers=AUTH).status_code == 201


# -- faults, reset, persistence ----------------------------------------------------------------


def test_slow_fault_is_counted(make_client: Callable[..., TestClient]) -> None:
    sbx = make_client(slow_probability=1.0, slow_ms=0)
    assert sbx.get("/api/pass-template", headers=AUTH).status_code == 200
    assert sbx.get("/_sandbox/stats").json()["faults"]["slow"] == 1


def test_reset_restores_seed_templates_and_drops_the_rest(sbx: TestClient) -> None:
    sbx.post("/api/v2/pass-template", json={"name": "Extra"}, headers=AUTH)
    sbx.delete(f"/api/pass-template/{LOYALTY}", headers=AUTH)
    sbx.post("/api/hook/subscribe", json={"event": "e", "target_url": "https://h"}, headers=AUTH)
    sbx.post("/_sandbox/reset")
    names = [t["name"] for t in sbx.get("/api/pass-template", headers=AUTH).json()]
    assert names == ["Loyalty Card", "Welcome Discount", "Event Ticket"]
    assert state(sbx, "hooks") == []


def test_sqlite_store_survives_a_restart(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    # given a sandbox writing to a file, with a pass, a template and a hook
    path = tmp_path / "sandbox.db"
    first = make_client(store_path=path)
    pid = create_pass(first, "kept")
    first.put(f"/api/pass/{pid}", json={"voided": True}, headers=AUTH)
    first.post("/api/v2/pass-template", json={"name": "Kept"}, headers=AUTH)
    first.post("/api/hook/subscribe", json={"event": "e", "target_url": "https://h"}, headers=AUTH)
    # when a new sandbox opens the same file
    second = make_client(store_path=path)
    # then everything is there, and new passes do not reuse sequence numbers
    got = second.get("/api/pass/kept", headers=AUTH).json()
    assert (got["identifier"], got["voided"]) == (pid, True)
    assert "Kept" in [t["name"] for t in second.get("/api/pass-template", headers=AUTH).json()]
    assert len(state(second, "hooks")) == 1
    other = create_pass(second, "new")
    assert second.get(f"/api/pass/{other}", headers=AUTH).json()["generatedId"] == "2"
    # and a reset empties the file too
    second.post("/_sandbox/reset")
    third = make_client(store_path=path)
    assert third.get("/api/pass/kept", headers=AUTH).status_code == 404
    assert len(third.get("/api/pass-template", headers=AUTH).json()) == 3
