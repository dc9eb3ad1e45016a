"""The sandbox's documented behaviours (reference §14), driven over HTTP in-process."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from worker.providers.passcreator.sandbox.app import create_sandbox_app
from worker.providers.passcreator.sandbox.store import template_id_for
from worker.providers.passcreator.settings import SandboxSettings

KEY = "sbx-key-1234"
AUTH = {"Authorization": KEY}
LOYALTY = template_id_for("Loyalty Card")
TICKET = template_id_for("Event Ticket")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        settings = SandboxSettings(api_key=SecretStr(KEY), **overrides)
        client = TestClient(create_sandbox_app(settings, clock=clock))
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def sbx(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def create(
    sbx: TestClient,
    upid: str | None = "u1",
    *,
    template: str = LOYALTY,
    enforce: bool = True,
    params: dict[str, str] | None = None,
    **fields: Any,
) -> Any:
    data: dict[str, Any] = {"templateId": template, "enforceUniqueUserProvidedId": enforce}
    if upid is not None:
        data["userProvidedId"] = upid
    data.update(fields)
    return sbx.post(
        "/api/v3/pass", params=params or {"async": "false"}, json={"data": data}, headers=AUTH
    )


def pass_id(response: Any) -> str:
    identifier: str = response.json()["data"]["identifier"]
    return identifier


def stored(sbx: TestClient) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = sbx.get("/_sandbox/passes").json()["passes"]
    return rows


def configure(sbx: TestClient, **changes: Any) -> Any:
    response = sbx.post("/_sandbox/config", json=changes)
    assert response.status_code == 200
    return response.json()


def b64url(query: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(query).encode()).decode().rstrip("=")


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {KEY}"}, {"Authorization": KEY + " "}, {"Authorization": "x"}],
)
def test_auth_requires_the_raw_key_exactly(sbx: TestClient, headers: dict[str, str]) -> None:
    response = sbx.get("/api/pass-template", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "description": "Unauthorized: missing or invalid API key",
        "errors": [],
        "data": [],
        "statusCode": 401,
    }


def test_auth_with_the_raw_key_passes(sbx: TestClient) -> None:
    assert sbx.get("/api/pass-template", headers=AUTH).status_code == 200


def test_control_endpoints_need_no_auth(sbx: TestClient) -> None:
    assert sbx.get("/_sandbox/stats").status_code == 200
    assert sbx.get("/_sandbox/passes").json() == {"count": 0, "passes": []}


# -- create ------------------------------------------------------------------------------------


def test_create_answers_the_v3_envelope_with_barcode_when_synchronous(sbx: TestClient) -> None:
    response = create(sbx, "u1", firstName="Ada")
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"success", "description", "errors", "data", "statusCode"}
    assert body["success"] is True
    assert body["statusCode"] == 200
    assert body["errors"] == []
    data = body["data"]
    assert set(data) == {"identifier", "downloadPage", "iPhoneUri", "androidUri", "barcodeValue"}
    assert data["downloadPage"] == f"http://testserver/sandbox-pass/{data['identifier']}"
    [row] = stored(sbx)
    assert row == {
        "identifier": data["identifier"],
        "userProvidedId": "u1",
        "templateId": LOYALTY,
        "barcodeValue": data["barcodeValue"],
        "fields": {"firstName": "Ada"},
        "voided": False,
        "deleted": False,
    }


@pytest.mark.parametrize("query", ["", "?async=true", "?async=TRUE"])
def test_async_create_omits_the_barcode(sbx: TestClient, query: str) -> None:
    response = sbx.post(
        "/api/v3/pass" + query,
        json={"data": {"templateId": LOYALTY, "userProvidedId": "u1"}},
        headers=AUTH,
    )
    assert response.status_code == 200
    assert set(response.json()["data"]) == {"identifier", "downloadPage", "iPhoneUri", "androidUri"}


def test_async_barcode_omission_is_configurable(make_client: Callable[..., TestClient]) -> None:
    sbx = make_client(async_omits_barcode=False)
    response = create(sbx, "u1", params={"async": "true"})
    assert "barcodeValue" in response.json()["data"]


def test_create_status_is_configurable(make_client: Callable[..., TestClient]) -> None:
    sbx = make_client(create_status=201)
    response = create(sbx, "u1")
    assert response.status_code == 201
    assert response.json()["statusCode"] == 201


def test_given_barcode_is_kept(sbx: TestClient) -> None:
    response = create(sbx, "u1", barcodeValue="MEMBER-7")
    assert response.json()["data"]["barcodeValue"] == "MEMBER-7"


def test_duplicate_user_provided_id_with_guard_is_a_400_and_stores_nothing(
    sbx: TestClient,
) -> None:
    # given
    create(sbx, "u1")
    # when
    response = create(sbx, "u1", points=5)
    # then
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["statusCode"] == 400
    assert body["errors"] == [
        {"property": "userProvidedId", "message": "The userProvidedId u1 is already in use."}
    ]
    assert len(stored(sbx)) == 1
    assert sbx.get("/_sandbox/stats").json()["creates"] == 1


def test_duplicate_message_is_configurable(make_client: Callable[..., TestClient]) -> None:
    sbx = make_client(duplicate_message="ID {user_provided_id} taken")
    create(sbx, "u1")
    assert create(sbx, "u1").json()["errors"][0]["message"] == "ID u1 taken"


def test_without_the_guard_duplicates_are_created_like_the_real_api(sbx: TestClient) -> None:
    create(sbx, "u1", enforce=False)
    assert create(sbx, "u1", enforce=False).status_code == 200
    assert [p["userProvidedId"] for p in stored(sbx)] == ["u1", "u1"]


def test_a_deleted_pass_frees_its_user_provided_id(sbx: TestClient) -> None:
    first = pass_id(create(sbx, "u1"))
    sbx.delete(f"/api/v3/pass/{first}", headers=AUTH)
    assert create(sbx, "u1").status_code == 200


@pytest.mark.parametrize("status", [400, 404])
def test_unknown_template_status_is_configurable(
    make_client: Callable[..., TestClient], status: int
) -> None:
    sbx = make_client(unknown_template_status=status)
    response = create(sbx, "u1", template="nope")
    assert response.status_code == status
    assert response.json()["errors"] == [{"property": "templateId", "message": "Unknown template"}]
    assert stored(sbx) == []


@pytest.mark.parametrize("body", [{}, {"data": "x"}, None])
def test_create_without_a_data_object_is_a_400(sbx: TestClient, body: Any) -> None:
    response = sbx.post("/api/v3/pass", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"property": "data", "message": "The property data is required"}
    ]


def test_create_with_a_non_json_body_is_a_400(sbx: TestClient) -> None:
    response = sbx.post("/api/v3/pass", content=b"{nope", headers=AUTH)
    assert response.status_code == 400


# -- update, replace, delete -------------------------------------------------------------------


def test_patch_merges_and_post_replaces(sbx: TestClient) -> None:
    # given
    identifier = pass_id(create(sbx, "u1", firstName="Ada", points=1))
    # when PATCH sends one field
    patched = sbx.patch(f"/api/v3/pass/{identifier}", json={"data": {"points": 2}}, headers=AUTH)
    # then the others are kept
    assert patched.status_code == 200
    assert patched.json()["data"]["identifier"] == identifier
    assert stored(sbx)[0]["fields"] == {"firstName": "Ada", "points": 2}
    # when POST sends one field, the others are gone
    replaced = sbx.post(f"/api/v3/pass/{identifier}", json={"data": {"points": 3}}, headers=AUTH)
    assert replaced.status_code == 200
    assert stored(sbx)[0]["fields"] == {"points": 3}


def test_v3_paths_take_the_uid_only_unless_configured(
    make_client: Callable[..., TestClient],
) -> None:
    change = {"data": {"points": 1}}
    strict = make_client()
    create(strict, "u1")
    assert strict.patch("/api/v3/pass/u1", json=change, headers=AUTH).status_code == 404
    lenient = make_client(v3_accepts_user_provided_id=True)
    create(lenient, "u1")
    assert lenient.patch("/api/v3/pass/u1", json=change, headers=AUTH).status_code == 200
    assert stored(lenient)[0]["fields"] == {"points": 1}


def test_patch_of_unknown_pass_is_404_envelope(sbx: TestClient) -> None:
    response = sbx.patch("/api/v3/pass/nope", json={"data": {"points": 1}}, headers=AUTH)
    assert response.status_code == 404
    assert response.json()["success"] is False
    assert response.json()["description"] == "Pass not found"


def test_delete_twice_gives_404_the_second_time(sbx: TestClient) -> None:
    identifier = pass_id(create(sbx, "u1"))
    first = sbx.delete(f"/api/v3/pass/{identifier}", headers=AUTH)
    second = sbx.delete(f"/api/v3/pass/{identifier}", headers=AUTH)
    assert first.status_code == 200
    assert first.json()["success"] is True
    assert second.status_code == 404
    assert sbx.get(f"/api/pass/{identifier}", headers=AUTH).status_code == 404
    assert stored(sbx)[0]["deleted"] is True


def test_delete_externally_then_patch_is_404(sbx: TestClient) -> None:
    identifier = pass_id(create(sbx, "u1"))
    response = sbx.post(f"/_sandbox/passes/{identifier}/delete-externally")
    assert response.json() == {"identifier": identifier, "deleted": True}
    patched = sbx.patch(f"/api/v3/pass/{identifier}", json={"data": {"points": 1}}, headers=AUTH)
    assert patched.status_code == 404
    assert sbx.post(f"/_sandbox/passes/{identifier}/delete-externally").status_code == 404


# -- v1 read and void --------------------------------------------------------------------------


def test_v1_get_by_uid_user_provided_id_or_barcode(sbx: TestClient) -> None:
    created = create(sbx, "u1", barcodeValue="BC-9", tier="gold").json()["data"]
    for key in (created["identifier"], "u1", "BC-9"):
        response = sbx.get(f"/api/pass/{key}", headers=AUTH)
        assert response.status_code == 200
        body = response.json()
        assert body["identifier"] == created["identifier"]
        assert body["userProvidedId"] == "u1"
        assert body["passTemplateGuid"] == LOYALTY
        assert body["passTemplateName"] == "Loyalty Card"
        assert body["voided"] is False
        assert body["redeemed"] is False
        assert body["barcodeValue"] == "BC-9"
        assert body["additionalProperties"] == {"tier": "gold"}
        assert body["linkToPassPage"] == created["downloadPage"]
        assert body["iPhoneUri"] == created["iPhoneUri"]


def test_v1_get_unknown_is_404(sbx: TestClient) -> None:
    assert sbx.get("/api/pass/nobody", headers=AUTH).status_code == 404


def test_put_voided_answers_204_and_get_shows_a_bool(sbx: TestClient) -> None:
    identifier = pass_id(create(sbx, "u1"))
    response = sbx.put(f"/api/pass/{identifier}", json={"voided": True}, headers=AUTH)
    assert response.status_code == 204
    assert response.content == b""
    assert sbx.get(f"/api/pass/{identifier}", headers=AUTH).json()["voided"] is True
    assert stored(sbx)[0]["voided"] is True


@pytest.mark.parametrize("body", [{}, {"voided": "true"}, None])
def test_put_without_a_boolean_voided_is_400_and_changes_nothing(
    sbx: TestClient, body: Any
) -> None:
    identifier = pass_id(create(sbx, "u1"))
    response = sbx.put(f"/api/pass/{identifier}", json=body, headers=AUTH)
    assert response.status_code == 400
    assert stored(sbx)[0]["voided"] is False


def test_put_on_unknown_pass_is_404(sbx: TestClient) -> None:
    assert sbx.put("/api/pass/nope", json={"voided": True}, headers=AUTH).status_code == 404


def test_templates_are_seeded_with_deterministic_ids(
    make_client: Callable[..., TestClient],
) -> None:
    sbx = make_client(templates=["Gym Card", "Coupon"])
    assert sbx.get("/api/pass-template", headers=AUTH).json() == [
        {"identifier": template_id_for("Gym Card"), "name": "Gym Card"},
        {"identifier": template_id_for("Coupon"), "name": "Coupon"},
    ]
    assert template_id_for("Gym Card") == template_id_for("Gym Card")
    assert template_id_for("Gym Card") != template_id_for("Coupon")


# -- template properties -----------------------------------------------------------------------


def test_seeded_templates_describe_their_properties_in_the_documented_shape(
    sbx: TestClient,
) -> None:
    body = sbx.get(f"/api/pass-template/{LOYALTY}", headers=AUTH).json()
    assert body["dynamicFields"]["passFrontFields"] == []
    properties = body["dynamicFields"]["additionalProperties"]
    assert list(properties) == ["firstName", "lastName", "email", "tier", "points", "visits"]
    assert properties["tier"] == f"{LOYALTY}.tier"


def test_an_unknown_property_is_refused_with_the_error_envelope_and_nothing_is_written(
    sbx: TestClient,
) -> None:
    # Given the Loyalty Card, which has no couponCode and no seat
    # When a pass is created with both
    response = create(sbx, "u1", firstName="Ada", couponCode="X", seat="12A")
    # Then a 400 envelope names each unknown property, and no pass exists
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "description": "Invalid data.",
        "errors": [
            {
                "property": name,
                "message": f"Unknown property {name}: template Loyalty Card has no such property",
            }
            for name in ("couponCode", "seat")
        ],
        "data": [],
        "statusCode": 400,
    }
    assert stored(sbx) == []
    # And an update with one is refused too, leaving the pass as it was
    identifier = pass_id(create(sbx, "u1", firstName="Ada"))
    patched = sbx.patch(f"/api/v3/pass/{identifier}", json={"data": {"seat": "1"}}, headers=AUTH)
    assert patched.status_code == 400
    assert patched.json()["errors"][0]["property"] == "seat"
    assert stored(sbx)[0]["fields"] == {"firstName": "Ada"}


def test_a_property_may_be_named_by_its_id(sbx: TestClient) -> None:
    response = create(sbx, "u1", **{f"{LOYALTY}.tier": "gold"})
    assert response.status_code == 200
    assert stored(sbx)[0]["fields"] == {"tier": "gold"}


def test_ignore_accepts_an_unknown_property_and_drops_it(
    make_client: Callable[..., TestClient],
) -> None:
    sbx = make_client(unknown_properties="ignore")
    response = create(sbx, "u1", firstName="Ada", couponCode="X")
    assert response.status_code == 200
    assert stored(sbx)[0]["fields"] == {"firstName": "Ada"}
    # And the setting can be changed at runtime
    assert sbx.post("/_sandbox/config", json={"unknown_properties": "reject"}).status_code == 200
    assert create(sbx, "u2", couponCode="X").status_code == 400


def test_templates_may_be_seeded_with_their_properties(
    make_client: Callable[..., TestClient],
) -> None:
    sbx = make_client(templates={"Gym Card": ["visits"]})
    gym = template_id_for("Gym Card")
    assert create(sbx, "u1", template=gym, visits=1).status_code == 200
    assert create(sbx, "u2", template=gym, firstName="Ada").status_code == 400


# -- list --------------------------------------------------------------------------------------


def _create_many(sbx: TestClient, count: int) -> list[str]:
    """Passes u0..u{count-1}, oldest first (several may share a millisecond)."""
    return [pass_id(create(sbx, f"u{n}", points=n)) for n in range(count)]


def test_list_is_newest_first_and_keyset_paged(sbx: TestClient) -> None:
    # given five passes
    ids = _create_many(sbx, 5)
    # when following page.next from a page size of 2
    seen: list[str] = []
    url: str | None = "/api/v3/pass?pageSize=2"
    pages = 0
    while url is not None:
        body = sbx.get(url, headers=AUTH).json()
        pages += 1
        seen += [row["identifier"] for row in body["data"]]
        assert body["count"] == len(body["data"])
        assert body["responseMetaData"] == {
            "resultsTotal": 5,
            "resultsThisPage": len(body["data"]),
        }
        url = body["page"]["next"]
    # then every pass once, newest first
    assert seen == list(reversed(ids))
    assert pages == 3


def test_page_next_carries_keyset_parameters(sbx: TestClient) -> None:
    ids = _create_many(sbx, 3)
    body = sbx.get("/api/v3/pass?pageSize=2", headers=AUTH).json()
    nxt = body["page"]["next"]
    assert nxt.startswith("http://testserver/api/v3/pass/?pageSize=2&startUid=" + ids[0])
    assert "startCreatedOnTimestamp=" in nxt


def test_page_next_host_and_last_page_marker_are_configurable(
    make_client: Callable[..., TestClient],
) -> None:
    sbx = make_client(page_next_base_url="https://passcreator.com", last_page_marker="missing")
    _create_many(sbx, 2)
    first = sbx.get("/api/v3/pass?pageSize=1", headers=AUTH).json()
    assert first["page"]["next"].startswith("https://passcreator.com/api/v3/pass/?")
    last = sbx.get("/api/v3/pass?pageSize=5", headers=AUTH).json()
    assert "page" not in last


def test_list_ignores_user_provided_id_param_like_the_real_api(sbx: TestClient) -> None:
    ids = _create_many(sbx, 3)
    body = sbx.get("/api/v3/pass?userProvidedId=u0", headers=AUTH).json()
    # the newest pass comes first, which is NOT u0's: the pitfall §12.1 reproduces
    assert [row["identifier"] for row in body["data"]] == list(reversed(ids))
    assert body["data"][0]["userProvidedId"] == "u2"


def test_list_honours_user_provided_id_param_when_the_pitfall_is_off(
    make_client: Callable[..., TestClient],
) -> None:
    sbx = make_client(ignore_user_provided_id_param=False)
    ids = _create_many(sbx, 3)
    body = sbx.get("/api/v3/pass?userProvidedId=u0", headers=AUTH).json()
    assert [row["identifier"] for row in body["data"]] == [ids[0]]


def test_list_filters_through_the_query_language(sbx: TestClient) -> None:
    ids = _create_many(sbx, 3)
    create(sbx, "t1", template=TICKET)
    by_upid = {"groups": [[{"field": "userProvidedId", "operator": "equals", "value": "u1"}]]}
    rows = sbx.get("/api/v3/pass", params={"query": b64url(by_upid)}, headers=AUTH).json()["data"]
    assert [row["identifier"] for row in rows] == [ids[1]]
    by_template = {"templateId": TICKET}
    rows = sbx.get("/api/v3/pass", params={"query": b64url(by_template)}, headers=AUTH).json()
    assert [row["userProvidedId"] for row in rows["data"]] == ["t1"]
    either = {
        "templateId": LOYALTY,
        "groups": [
            [{"field": "points", "operator": "greaterThanOrEquals", "value": 2}],
            [{"field": "userProvidedId", "operator": "equals", "value": ["u0", "zz"]}],
        ],
    }
    rows = sbx.get("/api/v3/pass", params={"query": b64url(either)}, headers=AUTH).json()
    assert [row["userProvidedId"] for row in rows["data"]] == ["u2", "u0"]


@pytest.mark.parametrize(
    "raw",
    [
        "!!!",
        b64url({"groups": "x"}),
        b64url({"groups": [[{"field": "a", "operator": "like", "value": 1}]]}),
    ],
)
def test_bad_query_is_a_400(sbx: TestClient, raw: str) -> None:
    response = sbx.get("/api/v3/pass", params={"query": raw}, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["errors"][0]["property"] == "query"


def test_list_rows_carry_properties_by_name(sbx: TestClient) -> None:
    create(sbx, "u1", tier="gold")
    [row] = sbx.get("/api/v3/pass", headers=AUTH).json()["data"]
    assert row["tier"] == "gold"
    assert row["userProvidedId"] == "u1"
    assert row["passTemplateGuid"] == LOYALTY


def test_page_size_is_capped(make_client: Callable[..., TestClient]) -> None:
    sbx = make_client(max_page_size=2)
    _create_many(sbx, 3)
    body = sbx.get("/api/v3/pass?pageSize=50", headers=AUTH).json()
    assert body["count"] == 2


# -- rate limit, faults, latency ---------------------------------------------------------------


def test_token_bucket_answers_429_with_retry_after(
    make_client: Callable[..., TestClient], clock: FakeClock
) -> None:
    # given two requests a minute
    sbx = make_client(rate_limit_per_minute=2)
    # when three arrive at once
    statuses = [sbx.get("/api/pass-template", headers=AUTH).status_code for _ in range(3)]
    # then the third waits for one token: 30 s
    assert statuses == [200, 200, 429]
    limited = sbx.get("/api/pass-template", headers=AUTH)
    assert limited.headers["Retry-After"] == "30"
    assert limited.json()["statusCode"] == 429
    # and after 30 s one more is allowed, not two
    clock.now += 30
    assert sbx.get("/api/pass-template", headers=AUTH).status_code == 200
    assert sbx.get("/api/pass-template", headers=AUTH).status_code == 429
    assert sbx.get("/_sandbox/stats").json()["rate_limited"] == 3


def test_retry_after_header_can_be_omitted(
    make_client: Callable[..., TestClient],
) -> None:
    sbx = make_client(rate_limit_per_minute=1, send_retry_after=False)
    sbx.get("/api/pass-template", headers=AUTH)
    limited = sbx.get("/api/pass-template", headers=AUTH)
    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers


def test_rate_limit_zero_is_unlimited(sbx: TestClient) -> None:
    statuses = {sbx.get("/api/pass-template", headers=AUTH).status_code for _ in range(50)}
    assert statuses == {200}


def test_rate_limited_write_is_not_applied(make_client: Callable[..., TestClient]) -> None:
    sbx = make_client(rate_limit_per_minute=1)
    create(sbx, "u1")
    assert create(sbx, "u2").status_code == 429
    assert [p["userProvidedId"] for p in stored(sbx)] == ["u1"]


def test_commit_then_fail_applies_the_write_and_answers_500(sbx: TestClient) -> None:
    # given
    identifier = pass_id(create(sbx, "u1", points=1))
    configure(sbx, commit_then_fail_probability=1.0)
    # when
    response = sbx.patch(f"/api/v3/pass/{identifier}", json={"data": {"points": 9}}, headers=AUTH)
    # then
    assert response.status_code == 500
    assert response.json()["success"] is False
    assert stored(sbx)[0]["fields"] == {"points": 9}
    stats = sbx.get("/_sandbox/stats").json()
    assert stats["writes"] == 2
    assert stats["faults"]["commit_then_fail"] == 1
    assert stats["faults_injected"] == 1


def test_injected_500_comes_before_the_write(sbx: TestClient) -> None:
    configure(sbx, error_500_probability=1.0)
    response = create(sbx, "u1")
    assert response.status_code == 500
    assert response.json()["description"] == "Injected fault"
    assert stored(sbx) == []
    assert sbx.get("/_sandbox/stats").json()["writes"] == 0


def test_injected_503_is_an_html_page(sbx: TestClient) -> None:
    configure(sbx, error_503_probability=1.0)
    response = sbx.get("/api/pass-template", headers=AUTH)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")


def test_non_json_fault_on_v1_reads(sbx: TestClient) -> None:
    configure(sbx, non_json_probability=1.0)
    response = sbx.get("/api/pass/anything", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_the_same_seed_gives_the_same_faults(sbx: TestClient) -> None:
    def run() -> list[int]:
        configure(sbx, error_500_probability=0.5, seed=7)
        return [sbx.get("/api/pass-template", headers=AUTH).status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert set(first) == {200, 500}


def test_latency_is_configurable_at_runtime(sbx: TestClient) -> None:
    assert configure(sbx, latency_ms=5)["latency_ms"] == 5.0
    assert sbx.get("/api/pass-template", headers=AUTH).status_code == 200


# -- stats, config, reset ----------------------------------------------------------------------


def test_stats_count_calls_per_endpoint_template(sbx: TestClient) -> None:
    identifier = pass_id(create(sbx, "u1"))
    create(sbx, "u1")  # duplicate: a call, not a write
    sbx.patch(f"/api/v3/pass/{identifier}", json={"data": {"points": 1}}, headers=AUTH)
    sbx.get(f"/api/pass/{identifier}", headers=AUTH)
    sbx.get("/api/v3/pass/", headers=AUTH)
    sbx.get("/api/v3/pass", headers=AUTH)
    sbx.put(f"/api/pass/{identifier}", json={"voided": True}, headers=AUTH)
    sbx.delete(f"/api/v3/pass/{identifier}", headers=AUTH)
    sbx.get("/api/pass-template")  # 401: still a call
    assert sbx.get("/_sandbox/stats").json() == {
        "calls": {
            "DELETE /api/v3/pass/{identifier}": 1,
            "GET /api/pass-template": 1,
            "GET /api/pass/{identifier}": 1,
            "GET /api/v3/pass": 2,
            "PATCH /api/v3/pass/{identifier}": 1,
            "POST /api/v3/pass": 2,
            "PUT /api/pass/{identifier}": 1,
        },
        "writes": 4,
        "creates": 1,
        "rate_limited": 0,
        "faults_injected": 0,
        "faults": {"500": 0, "503": 0, "commit_then_fail": 0, "non_json": 0, "slow": 0},
    }


@pytest.mark.parametrize(
    "changes",
    [{"error_500_probability": 2}, {"no_such_knob": 1}, {"create_status": 202}],
)
def test_invalid_config_is_422_and_changes_nothing(
    sbx: TestClient, changes: dict[str, Any]
) -> None:
    before = sbx.get("/_sandbox/config").json()
    response = sbx.post("/_sandbox/config", json=changes)
    assert response.status_code == 422
    assert sbx.get("/_sandbox/config").json() == before


def test_config_body_must_be_an_object(sbx: TestClient) -> None:
    assert sbx.post("/_sandbox/config", json=[1]).status_code == 422


def test_reset_empties_the_store_zeroes_stats_and_restores_config(
    make_client: Callable[..., TestClient],
) -> None:
    sbx = make_client(rate_limit_per_minute=100)
    create(sbx, "u1")
    configure(sbx, rate_limit_per_minute=1, error_500_probability=0.25)
    assert sbx.post("/_sandbox/reset").json() == {"reset": True}
    assert stored(sbx) == []
    stats = sbx.get("/_sandbox/stats").json()
    assert stats["calls"] == {}
    assert stats["writes"] == 0
    config = sbx.get("/_sandbox/config").json()
    assert config["rate_limit_per_minute"] == 100
    assert config["error_500_probability"] == 0.0
    assert create(sbx, "u1").status_code == 200
