"""PassKitClient: every request shape (built from the vendor's examples) and the error mapping.

The bodies follow the reference's V-code shapes: enrol `POST /members/member` with
programId/tierId/externalId/person/points/metaData -> {"id"}; `PUT /members/member` (PATCH by
default); `DELETE /members/member` with a JSON body; points earn/burn/set; updateExpiry; lists
streamed as one {"result"} per line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import respx
from pydantic import SecretStr

from worker.config import ConfigError
from worker.providers.errors import (
    AlreadyExistsError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from worker.providers.passkit.auth import sign_token
from worker.providers.passkit.client import (
    CallRecord,
    PassKitClient,
    error_messages,
    parse_stream,
    split_template_id,
)
from worker.providers.passkit.settings import PassKitSettings
from worker.providers.port import PassProvider, ProviderTemplate

BASE = "https://api.pub1.passkit.io"
KEY = "2vqcRgYdJcN7kPLf2bM1xD"
SECRET = "pk-rest-secret-5b0c9a7e1f2d3c4b5a69788796a5b4c3"
PROGRAM = "3yyTsbqwmtXaiKZ5qWhqTP"
TEMPLATE = f"{PROGRAM}/base"
MEMBER = "20tDNDWjawWwnqygGvFhL1"
NOW = 1_780_000_000.0


def make_settings(**overrides: Any) -> PassKitSettings:
    values: dict[str, Any] = {
        "api_key": SecretStr(KEY),
        "secret": SecretStr(SECRET),
        "backoff_seconds": 0.0,
        "max_attempts": 3,
    }
    return PassKitSettings(**(values | overrides))


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(records: list[CallRecord]) -> Iterator[PassKitClient]:
    with PassKitClient(make_settings(), on_attempt=records.append, clock=lambda: NOW) as c:
        yield c


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def body_of(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


def ndjson(*rows: dict[str, Any]) -> str:
    return "".join(json.dumps({"result": row}) + "\n" for row in rows)


def claims_of(request: httpx.Request) -> dict[str, Any]:
    token = request.headers["Authorization"]
    decoded: dict[str, Any] = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    return decoded


# -- authentication ------------------------------------------------------------------------


def test_every_request_carries_a_fresh_hs256_jwt_without_bearer(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.get(f"/members/member/id/{MEMBER}").respond(200, json={"id": MEMBER})

    client.get_member(MEMBER)

    request = route.calls[0].request
    token = request.headers["Authorization"]
    assert not token.startswith("Bearer")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert claims_of(request) == {"uid": KEY, "iat": int(NOW - 10), "exp": int(NOW + 50)}


def test_each_retry_is_signed_again_with_the_clock_of_its_own_attempt(
    api: respx.MockRouter,
) -> None:
    ticks = iter([NOW, NOW + 30, NOW + 61])
    route = api.get(f"/members/member/id/{MEMBER}").mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(200, json={"id": MEMBER}),
        ]
    )
    with PassKitClient(make_settings(), clock=lambda: next(ticks)) as c:
        c.get_member(MEMBER)

    iats = [claims_of(call.request)["iat"] for call in route.calls]
    assert iats == [int(NOW - 10), int(NOW + 20), int(NOW + 51)]


def test_jwt_skew_and_lifetime_are_settings() -> None:
    token = sign_token(KEY, SECRET, now=NOW, issued_before_seconds=5, expires_after_seconds=55)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert (claims["iat"], claims["exp"]) == (int(NOW - 5), int(NOW + 55))


def test_a_long_lived_token_is_sent_as_bearer(api: respx.MockRouter) -> None:
    route = api.get(f"/members/member/id/{MEMBER}").respond(200, json={"id": MEMBER})
    settings = make_settings(auth="long_lived_token", api_key=SecretStr("llt-1"), secret=None)
    with PassKitClient(settings) as c:
        c.get_member(MEMBER)
    assert route.calls[0].request.headers["Authorization"] == "Bearer llt-1"


def test_without_credentials_the_client_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="set api_key and secret"):
        PassKitClient(make_settings(secret=None))
    with pytest.raises(ConfigError, match="long_lived_token: set api_key"):
        PassKitClient(make_settings(auth="long_lived_token", api_key=None))


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_rejected_with_a_clear_message(
    client: PassKitClient, api: respx.MockRouter, records: list[CallRecord], status: int
) -> None:
    route = api.get(f"/members/member/id/{MEMBER}").respond(
        status, json={"error": "jwt was issued too long ago"}
    )

    with pytest.raises(RejectedError) as caught:
        client.get_member(MEMBER)

    assert type(caught.value) is RejectedError
    assert caught.value.status == status
    assert "PassKit refused the credentials" in caught.value.message
    assert "api_key and secret" in caught.value.message
    assert "jwt was issued too long ago" in caught.value.message
    assert SECRET not in caught.value.message
    assert route.call_count == 1  # never retried
    assert [r.outcome for r in records] == ["rejected"]


# -- regions -------------------------------------------------------------------------------


def test_the_region_picks_the_api_host_and_the_pass_links() -> None:
    settings = make_settings(region="pub2")
    assert settings.api_base() == "https://api.pub2.passkit.io"
    with respx.mock(base_url="https://api.pub2.passkit.io") as router:
        router.post("/members/member").respond(200, json={"id": MEMBER})
        with PassKitClient(settings) as c:
            created = c.create_pass(template_id=TEMPLATE, user_provided_id="crm-1", fields={})
    assert created.download_page == f"https://pub2.pskt.io/{MEMBER}"
    assert created.iphone_uri == f"https://pub2.pskt.io/{MEMBER}.pkpass"
    assert created.android_uri == f"https://pub2.pskt.io/{MEMBER}.gpay"


def test_base_url_overrides_the_region() -> None:
    settings = make_settings(base_url="http://127.0.0.1:8091/", region="pub2")
    assert settings.api_base() == "http://127.0.0.1:8091"
    assert settings.link_base() == "https://pub2.pskt.io"


# -- enrol and adopt -----------------------------------------------------------------------


def test_create_enrols_a_member_with_the_documented_body(
    client: PassKitClient, api: respx.MockRouter, records: list[CallRecord]
) -> None:
    route = api.post("/members/member").respond(200, json={"id": MEMBER})

    created = client.create_pass(
        template_id=TEMPLATE,
        user_provided_id="crm-123",
        fields={
            "forename": "Anna",
            "surname": "Kowalska",
            "displayName": "Anna Kowalska",
            "person.emailAddress": "anna@example.com",
            "points": 0,
            "crmSegment": "vip",
            "metaData.visits": 3,
        },
    )

    assert body_of(route) == {
        "programId": PROGRAM,
        "tierId": "base",
        "externalId": "crm-123",
        "person": {
            "forename": "Anna",
            "surname": "Kowalska",
            "displayName": "Anna Kowalska",
            "emailAddress": "anna@example.com",
        },
        "points": 0,
        "metaData": {"crmSegment": "vip", "visits": "3"},
    }
    assert route.calls[0].request.headers["Content-Type"] == "application/json"
    assert created.pass_id == MEMBER
    assert created.user_provided_id == "crm-123"
    assert created.template_id == TEMPLATE
    assert created.voided is False
    assert [(r.action, r.method, r.path, r.status, r.outcome, r.pass_ref) for r in records] == [
        ("enrol", "POST", "/members/member", 200, "ok", "crm-123")
    ]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (409, {"code": 6, "message": "member already exists", "details": []}),
        (400, {"code": 3, "message": "externalId already exists in this program"}),
    ],
)
def test_a_duplicate_external_id_is_already_exists(
    client: PassKitClient, api: respx.MockRouter, status: int, body: dict[str, Any]
) -> None:
    api.post("/members/member").respond(status, json=body)

    with pytest.raises(AlreadyExistsError) as caught:
        client.create_pass(template_id=TEMPLATE, user_provided_id="crm-1", fields={})

    assert caught.value.status == status


def test_a_plain_400_on_enrol_is_a_rejection_not_a_duplicate(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    api.post("/members/member").respond(400, json={"code": 3, "message": "tierId is required"})
    with pytest.raises(RejectedError, match="tierId is required") as caught:
        client.create_pass(template_id=TEMPLATE, user_provided_id="crm-1", fields={})
    assert not isinstance(caught.value, AlreadyExistsError)


def test_the_duplicate_status_is_a_setting(api: respx.MockRouter) -> None:
    api.post("/members/member").respond(409, json={"message": "conflict"})
    with (
        PassKitClient(make_settings(duplicate_statuses=[422])) as c,
        pytest.raises(RejectedError) as caught,
    ):
        c.create_pass(template_id=TEMPLATE, user_provided_id="crm-1", fields={})
    assert not isinstance(caught.value, AlreadyExistsError)


def test_the_duplicate_is_adopted_by_external_id_in_the_enrolled_program(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    api.post("/members/member").respond(409, json={"code": 6, "message": "exists"})
    lookup = api.get(f"/members/member/externalId/{PROGRAM}/crm%2F1").respond(
        200,
        json={"id": MEMBER, "externalId": "crm/1", "programId": PROGRAM, "tierId": "base"},
    )

    with pytest.raises(AlreadyExistsError):
        client.create_pass(template_id=TEMPLATE, user_provided_id="crm/1", fields={})
    found = client.get_pass("crm/1")

    assert lookup.call_count == 1
    assert found.pass_id == MEMBER
    assert found.template_id == TEMPLATE


def test_get_pass_with_a_template_looks_up_the_external_id_there(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    lookup = api.get(f"/members/member/externalId/{PROGRAM}/crm-9").respond(
        200, json={"id": MEMBER, "externalId": "crm-9"}
    )
    assert client.get_pass("crm-9", template_id=TEMPLATE).pass_id == MEMBER
    assert lookup.call_count == 1


def test_get_pass_tries_the_id_then_every_program(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    by_id = api.get("/members/member/id/crm-7").respond(404, json={"code": 5, "message": "nf"})
    api.post("/members/programs/list").respond(
        200, text=ndjson({"id": "P1", "name": "One"}, {"id": "P2", "name": "Two"})
    )
    first = api.get("/members/member/externalId/P1/crm-7").respond(404, json={"code": 5})
    second = api.get("/members/member/externalId/P2/crm-7").respond(
        200, json={"id": MEMBER, "externalId": "crm-7", "programId": "P2", "tierId": "gold"}
    )

    found = client.get_pass("crm-7")

    assert (by_id.call_count, first.call_count, second.call_count) == (1, 1, 1)
    assert found.template_id == "P2/gold"


def test_get_pass_not_found_anywhere_is_not_found(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    api.get("/members/member/id/x").respond(404, json={"code": 5})
    api.post("/members/programs/list").respond(200, text=ndjson({"id": "P1", "name": "One"}))
    api.get("/members/member/externalId/P1/x").respond(404, json={"code": 5})
    with pytest.raises(NotFoundError):
        client.get_pass("x")


def test_a_member_read_back_maps_fields_links_and_void_state(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    api.get(f"/members/member/id/{MEMBER}").respond(
        200,
        json={
            "id": MEMBER,
            "externalId": "crm-1",
            "programId": PROGRAM,
            "tierId": "gold",
            "person": {"forename": "Anna", "emailAddress": "a@example.com"},
            "points": 12.5,
            "metaData": {"segment": "vip"},
            "status": "EXPIRED",
        },
    )

    found = client.get_pass(MEMBER, template_id=None)

    assert found.fields == {
        "forename": "Anna",
        "emailAddress": "a@example.com",
        "points": 12.5,
        "segment": "vip",
    }
    assert found.voided is True
    assert found.template_id == f"{PROGRAM}/gold"
    assert found.download_page == f"https://pub1.pskt.io/{MEMBER}"


def test_an_expiry_in_the_past_reads_as_voided(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    api.get(f"/members/member/id/{MEMBER}").respond(
        200, json={"id": MEMBER, "expiryDate": "2020-01-01T00:00:00Z", "status": "ENROLLED"}
    )
    assert client.get_pass(MEMBER).voided is True


# -- update --------------------------------------------------------------------------------


def test_update_is_a_put_of_the_changed_fields(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.put("/members/member").respond(200, json={"id": MEMBER})

    updated = client.update_pass(MEMBER, {"points": 40, "forename": "Ann", "tier": "gold"})

    assert body_of(route) == {
        "id": MEMBER,
        "points": 40,
        "person": {"forename": "Ann"},
        "metaData": {"tier": "gold"},
    }
    assert "operation" not in body_of(route)  # the default (PATCH) semantics
    assert updated.pass_id == MEMBER
    assert updated.fields == {"points": 40, "forename": "Ann", "tier": "gold"}


def test_zero_points_go_through_points_set_with_the_reset_flag(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    put = api.put("/members/member").respond(200, json={"id": MEMBER})
    reset = api.put("/members/member/points/set").respond(200, json={"id": MEMBER, "points": 0})

    client.update_pass(MEMBER, {"points": 0, "tierPoints": 0, "forename": "Ann"})

    assert body_of(put) == {"id": MEMBER, "person": {"forename": "Ann"}}
    assert body_of(reset) == {"id": MEMBER, "resetPoints": True, "resetTierPoints": True}


def test_only_zero_points_make_no_member_put(client: PassKitClient, api: respx.MockRouter) -> None:
    put = api.put("/members/member").respond(200, json={"id": MEMBER})
    reset = api.put("/members/member/points/set").respond(200, json={"id": MEMBER})
    client.update_pass(MEMBER, {"points": 0})
    assert put.call_count == 0
    assert body_of(reset) == {"id": MEMBER, "resetPoints": True}


def test_an_empty_or_false_value_makes_a_full_record_put(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    current = {
        "id": MEMBER,
        "externalId": "crm-1",
        "programId": PROGRAM,
        "tierId": "base",
        "person": {"forename": "Anna", "surname": "K", "externalIds": ["x"]},
        "metaData": {"segment": "vip", "city": "Oslo"},
        "points": 7,
        "optOut": True,
        "created": "2026-01-01T00:00:00Z",
        "updated": "2026-01-02T00:00:00Z",
    }
    get = api.get(f"/members/member/id/{MEMBER}").respond(200, json=current)
    put = api.put("/members/member").respond(200, json={"id": MEMBER})

    client.update_pass(MEMBER, {"segment": "", "optOut": False, "surname": "Nowak"})

    assert get.call_count == 1
    assert body_of(put) == {
        "id": MEMBER,
        "externalId": "crm-1",
        "programId": PROGRAM,
        "tierId": "base",
        "person": {"forename": "Anna", "surname": "Nowak"},
        "metaData": {"segment": "", "city": "Oslo"},
        "points": 7,
        "optOut": False,
        "operation": "OPERATION_PUT",
    }


def test_update_of_a_gone_member_is_not_found(client: PassKitClient, api: respx.MockRouter) -> None:
    api.put("/members/member").respond(404, json={"code": 5, "message": "member not found"})
    with pytest.raises(NotFoundError, match="member not found"):
        client.update_pass(MEMBER, {"forename": "A"})


# -- points --------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("earn_points", "earn"), ("burn_points", "burn")])
def test_earn_and_burn_put_the_amount(
    client: PassKitClient, api: respx.MockRouter, method: str, path: str
) -> None:
    route = api.put(f"/members/member/points/{path}").respond(
        200, json={"id": MEMBER, "externalId": "crm-1", "programId": PROGRAM, "points": 15}
    )

    answer = getattr(client, method)(MEMBER, 5)

    assert body_of(route) == {"id": MEMBER, "points": 5}
    assert answer.points == 15.0


def test_earn_is_not_repeated_after_an_answered_failure(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.put("/members/member/points/earn").respond(503)
    with pytest.raises(TransientError):
        client.earn_points(MEMBER, 5)
    assert route.call_count == 1


def test_negative_amounts_are_refused_before_any_call(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.put("/members/member/points/burn")
    with pytest.raises(RejectedError, match=">= 0"):
        client.burn_points(MEMBER, -1)
    assert route.call_count == 0


def test_set_points_sends_values_and_reset_flags(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.put("/members/member/points/set").respond(200, json={"id": MEMBER})
    client.set_points(MEMBER, points=20, secondaryPoints=0, resetTierPoints=True)
    assert body_of(route) == {
        "id": MEMBER,
        "points": 20,
        "resetSecondaryPoints": True,
        "resetTierPoints": True,
    }


# -- void, delete, push --------------------------------------------------------------------


def test_void_sets_the_expiry_in_the_past_and_unvoid_far_ahead(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.put("/members/member/updateExpiry").respond(200, json={"id": MEMBER})

    voided = client.set_voided(MEMBER, True)
    unvoided = client.set_voided(MEMBER, False)

    assert body_of(route, 0) == {"id": MEMBER, "expiryDate": "2026-05-28T20:25:40Z"}
    assert body_of(route, 1) == {"id": MEMBER, "expiryDate": "2036-05-25T20:26:40Z"}
    assert (voided.voided, unvoided.voided) == (True, False)


def test_delete_is_a_delete_with_a_json_body(client: PassKitClient, api: respx.MockRouter) -> None:
    route = api.delete("/members/member").respond(200, json={})
    client.delete_pass(MEMBER)
    assert route.calls[0].request.method == "DELETE"
    assert body_of(route) == {"id": MEMBER}


def test_delete_of_a_gone_member_is_not_found_unless_missing_ok(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    api.delete("/members/member").respond(404, json={"code": 5, "message": "not found"})
    with pytest.raises(NotFoundError):
        client.delete_pass(MEMBER)
    client.delete_pass(MEMBER, missing_ok=True)


def test_a_404_on_a_delete_retry_means_the_first_attempt_deleted(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.delete("/members/member").mock(
        side_effect=[httpx.Response(500), httpx.Response(404, json={"code": 5})]
    )
    client.delete_pass(MEMBER)
    assert route.call_count == 2


def test_push_creates_a_message_and_sends_it_to_the_pass(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    create = api.post("/message").respond(200, json={"id": "msg-1"})
    send = api.post("/message/send").respond(200, json={"count": 1})

    client.send_push(MEMBER, "You have 40 points")

    assert body_of(create) == {"title": "Update", "plainTextContent": "You have 40 points"}
    assert body_of(send) == {"messageId": "msg-1", "passIds": {"ids": [MEMBER]}}


# -- lists, programs, templates ------------------------------------------------------------


def test_list_members_pages_by_offset_over_the_ndjson_stream(
    api: respx.MockRouter,
) -> None:
    route = api.post(f"/members/member/list/{PROGRAM}").mock(
        side_effect=[
            httpx.Response(200, text=ndjson({"id": "m1"}, {"id": "m2"})),
            httpx.Response(200, text=ndjson({"id": "m3"})),
        ]
    )
    with PassKitClient(make_settings(page_size=2)) as c:
        rows = list(c.iter_members(PROGRAM))

    assert [r["id"] for r in rows] == ["m1", "m2", "m3"]
    assert body_of(route, 0) == {"programId": PROGRAM, "filters": {"limit": 2, "offset": 0}}
    assert body_of(route, 1) == {"programId": PROGRAM, "filters": {"limit": 2, "offset": 2}}


def test_a_full_last_page_costs_one_empty_page(api: respx.MockRouter) -> None:
    route = api.post(f"/members/member/list/{PROGRAM}").mock(
        side_effect=[httpx.Response(200, text=ndjson({"id": "m1"})), httpx.Response(200, text="")]
    )
    with PassKitClient(make_settings(page_size=1)) as c:
        assert [r["id"] for r in c.iter_members(PROGRAM)] == ["m1"]
    assert route.call_count == 2


def test_an_error_line_mid_stream_is_transient_and_retried(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    broken = json.dumps({"error": {"code": 14, "message": "transport is closing"}}) + "\n"
    route = api.post(f"/members/member/list/{PROGRAM}").mock(
        side_effect=[
            httpx.Response(200, text=ndjson({"id": "m1"}) + broken),
            httpx.Response(200, text=ndjson({"id": "m1"}, {"id": "m2"})),
        ]
    )
    rows = list(client.iter_members(PROGRAM))
    assert [r["id"] for r in rows] == ["m1", "m2"]
    assert route.call_count == 2


def test_parse_stream_reads_results_and_raises_on_errors() -> None:
    assert parse_stream("x", '{"result":{"id":"a"}}\n\n{"result":{"id":"b"}}') == [
        {"id": "a"},
        {"id": "b"},
    ]
    with pytest.raises(RejectedError, match="permission"):
        parse_stream("x", '{"error":{"code":7,"message":"permission denied"}}\n')
    with pytest.raises(TransientError, match="not JSON"):
        parse_stream("x", "<html>\n")


def test_list_templates_names_each_program_and_tier(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    programs = api.post("/members/programs/list").respond(
        200, text=ndjson({"id": PROGRAM, "name": "Loyalty"})
    )
    tiers = api.post("/members/tiers/list").respond(
        200,
        text=ndjson(
            {"id": "gold", "name": "Gold", "tierIndex": 2},
            {"id": "base", "name": "Base", "tierIndex": 1},
        ),
    )

    templates = client.list_templates()

    assert body_of(programs) == {"limit": 100, "offset": 0}
    assert body_of(tiers) == {"programId": PROGRAM, "filters": {"limit": 100, "offset": 0}}
    assert sorted((t.name, t.template_id) for t in templates) == [
        ("Loyalty", f"{PROGRAM}/base"),
        ("Loyalty/Base", f"{PROGRAM}/base"),
        ("Loyalty/Gold", f"{PROGRAM}/gold"),
        ("Loyalty/base", f"{PROGRAM}/base"),
        ("Loyalty/gold", f"{PROGRAM}/gold"),
    ]
    assert all(isinstance(t, ProviderTemplate) for t in templates)


def test_count_members_reads_a_string_total(client: PassKitClient, api: respx.MockRouter) -> None:
    route = api.post(f"/members/count/{PROGRAM}").respond(200, json={"total": "42"})
    assert client.count_members(PROGRAM) == 42
    assert body_of(route) == {"programId": PROGRAM, "filters": {}}


def test_a_malformed_template_id_is_refused() -> None:
    assert split_template_id("P/gold") == ("P", "gold")
    with pytest.raises(RejectedError, match="programId"):
        split_template_id("Loyalty")


# -- transient failures and back-off -------------------------------------------------------


def test_503_is_retried_with_the_documented_back_off(api: respx.MockRouter) -> None:
    route = api.get(f"/members/member/id/{MEMBER}").mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(200, json={"id": MEMBER}),
        ]
    )
    settings = make_settings(backoff_seconds=0.25, backoff_max_seconds=4.0, max_attempts=3)
    waits: list[float] = []
    with PassKitClient(settings, sleep=waits.append) as c:
        assert c.get_member(MEMBER)["id"] == MEMBER
    assert route.call_count == 3
    # 250 ms, then doubling, each plus up to 250 ms of jitter.
    assert len(waits) == 2
    assert 0.25 <= waits[0] <= 0.5
    assert 0.5 <= waits[1] <= 0.75


def test_503_exhausting_the_attempts_is_transient(
    client: PassKitClient, api: respx.MockRouter, records: list[CallRecord]
) -> None:
    api.get(f"/members/member/id/{MEMBER}").respond(
        503, json={"code": 14, "message": "Server is unavailable"}
    )
    with pytest.raises(TransientError, match="503") as caught:
        client.get_member(MEMBER)
    assert caught.value.status == 503
    assert [(r.attempt, r.outcome) for r in records] == [
        (1, "server_error"),
        (2, "server_error"),
        (3, "server_error"),
    ]


def test_an_enrol_answered_500_is_retried_and_the_repeat_reports_the_duplicate(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.post("/members/member").mock(
        side_effect=[httpx.Response(500), httpx.Response(409, json={"code": 6, "message": "x"})]
    )
    with pytest.raises(AlreadyExistsError):
        client.create_pass(template_id=TEMPLATE, user_provided_id="crm-1", fields={})
    assert route.call_count == 2


def test_an_enrol_without_external_id_is_not_repeated_after_an_answer(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.post("/members/member").respond(500)
    with pytest.raises(TransientError):
        client.create_pass(template_id=TEMPLATE, user_provided_id=None, fields={})
    assert route.call_count == 1


def test_a_connection_failure_is_transient_and_hides_the_request(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    api.get(f"/members/member/id/{MEMBER}").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransientError) as caught:
        client.get_member(MEMBER)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_a_429_is_rate_limited_at_once(client: PassKitClient, api: respx.MockRouter) -> None:
    route = api.get(f"/members/member/id/{MEMBER}").respond(429, headers={"Retry-After": "7"})
    with pytest.raises(RateLimitedError) as caught:
        client.get_member(MEMBER)
    assert caught.value.retry_after == 7.0
    assert route.call_count == 1


def test_a_non_json_success_is_transient(client: PassKitClient, api: respx.MockRouter) -> None:
    api.get(f"/members/member/id/{MEMBER}").respond(200, text="<html>maintenance</html>")
    with pytest.raises(TransientError, match="expected JSON"):
        client.get_member(MEMBER)


def test_both_error_shapes_are_read() -> None:
    assert error_messages({"code": 5, "message": "not found", "details": []}) == ["not found"]
    assert error_messages({"error": "jwt was issued too long ago"}) == [
        "jwt was issued too long ago"
    ]
    assert error_messages({"error": {"code": 14, "message": "unavailable"}}) == ["unavailable"]
    assert error_messages(None) == []


def test_an_empty_identifier_is_refused_before_any_call(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    with pytest.raises(RejectedError, match="empty"):
        client.get_member(" ")
    assert not api.calls


def test_a_broken_audit_hook_does_not_hide_the_outcome(api: respx.MockRouter) -> None:
    api.get(f"/members/member/id/{MEMBER}").respond(200, json={"id": MEMBER})

    def broken(_record: CallRecord) -> None:
        raise RuntimeError("audit down")

    with PassKitClient(make_settings(), on_attempt=broken) as c:
        assert c.get_member(MEMBER)["id"] == MEMBER


def test_path_overrides_are_settings(api: respx.MockRouter) -> None:
    route = api.get(f"/members/member/external/{PROGRAM}/crm-1").respond(200, json={"id": MEMBER})
    settings = make_settings(
        paths={"get_by_external_id": "/members/member/external/{programId}/{externalId}"}
    )
    with PassKitClient(settings) as c:
        c.get_member_by_external_id(PROGRAM, "crm-1")
    assert route.call_count == 1


def test_the_client_is_a_pass_provider() -> None:
    provider: PassProvider = PassKitClient(make_settings())
    assert provider.name == "passkit"


# -- webhooks ------------------------------------------------------------------------------


def test_subscribe_webhook_sends_a_sink_with_a_string_configuration(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.post("/integrations/sink").respond(200, json={"id": "sub-1"})

    sub = client.subscribe_webhook(
        PROGRAM,
        "https://hooks.example/providers/loyalty/callbacks?token=t",
        ["PASS_EVENT_INSTALLED", "PASS_EVENT_UNINSTALLED"],
        signing_secret="s3",
    )

    body = body_of(route)
    assert sub == "sub-1"
    assert json.loads(body.pop("configuration")) == {
        "targetUrl": "https://hooks.example/providers/loyalty/callbacks?token=t",
        "signingSecret": "s3",
    }
    assert body == {
        "classId": PROGRAM,
        "protocol": "MEMBERSHIP",
        "passEventId": ["PASS_EVENT_INSTALLED", "PASS_EVENT_UNINSTALLED"],
        "status": "INTEGRATION_ACTIVE",
        "configType": "WEBHOOK",
    }


def test_subscribe_webhook_is_not_repeated_after_an_answer(
    client: PassKitClient, api: respx.MockRouter
) -> None:
    route = api.post("/integrations/sink").respond(503)
    with pytest.raises(TransientError):
        client.subscribe_webhook(PROGRAM, "https://h.example/", ["PASS_EVENT_INSTALLED"])
    assert route.call_count == 1


def test_list_and_delete_webhooks(client: PassKitClient, api: respx.MockRouter) -> None:
    listed = api.post("/integrations/sinks/list").respond(
        200, text=ndjson({"id": "sub-1", "classId": PROGRAM, "configuration": "{}"})
    )
    deleted = api.delete("/integrations/sink/MEMBERSHIP/sub-1").respond(200, json={})

    assert [s["id"] for s in client.list_webhooks()] == ["sub-1"]
    client.delete_webhook("sub-1")

    assert body_of(listed) == {"limit": 100, "offset": 0}
    assert deleted.call_count == 1
