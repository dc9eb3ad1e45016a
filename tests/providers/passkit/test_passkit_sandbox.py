"""The PassKit sandbox: JWT check, member uniqueness, update semantics, streams and faults."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.providers.passkit.conftest import Receiver
from worker.providers.passkit.auth import sign_token
from worker.providers.passkit.sandbox.server import SandboxHandle, attach
from worker.providers.passkit.sandbox.store import program_id_for
from worker.providers.passkit.settings import PassKitSandboxSettings

LOYALTY = program_id_for("Loyalty Card")
WELCOME = program_id_for("Welcome Discount")
SETTINGS = PassKitSandboxSettings()
KEY = SETTINGS.api_key.get_secret_value()
SECRET = SETTINGS.api_secret.get_secret_value()
# One keep-alive connection for the whole module: a new connection per call is slow under load.
HTTP = httpx.Client(timeout=10)


def token(*, before: float = 10, after: float = 50, key: str = KEY, secret: str = SECRET) -> str:
    return sign_token(
        key, secret, now=time.time(), issued_before_seconds=before, expires_after_seconds=after
    )


def call(
    sandbox: SandboxHandle,
    method: str,
    path: str,
    body: Any = None,
    *,
    auth: str | None = None,
) -> httpx.Response:
    headers = {"Authorization": token() if auth is None else auth}
    content = None if body is None else json.dumps(body).encode()
    return HTTP.request(method, sandbox.base_url + path, content=content, headers=headers)


def enrol(sandbox: SandboxHandle, external: str, **extra: Any) -> str:
    body = {"programId": LOYALTY, "tierId": "base", "externalId": external, **extra}
    response = call(sandbox, "POST", "/members/member", body)
    assert response.status_code == 200, response.text
    member_id: str = response.json()["id"]
    return member_id


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


# -- authentication ------------------------------------------------------------------------


def test_a_fresh_jwt_is_accepted(passkit_sandbox: SandboxHandle) -> None:
    response = call(passkit_sandbox, "GET", f"/members/program/{LOYALTY}")
    assert response.status_code == 200
    assert response.json() == {"id": LOYALTY, "name": "Loyalty Card"}


@pytest.mark.parametrize(
    ("auth", "message", "reason"),
    [
        (lambda: token(before=120, after=-60), "jwt was issued too long ago", "too_old"),
        (lambda: token(before=-30, after=50), "Token used before issued", "used_before_issued"),
        (lambda: token(before=30, after=-5), "token is expired", "expired"),
        (lambda: token(before=10, after=3600), "token expiry is too far", "lifetime"),
        (
            lambda: token(secret="another-secret-of-at-least-32-bytes!"),
            "invalid token",
            "signature",
        ),
        (lambda: token(key="someone-else"), "invalid token", "uid"),
        (lambda: "Bearer " + token(), "invalid token", "bearer"),
        (lambda: "not.a.jwt", "invalid token", "signature"),
    ],
)
def test_a_bad_token_is_refused_with_401_and_nothing_changes(
    passkit_sandbox: SandboxHandle, auth: Any, message: str, reason: str
) -> None:
    body = {"programId": LOYALTY, "tierId": "base", "externalId": "crm-1"}
    response = call(passkit_sandbox, "POST", "/members/member", body, auth=auth())

    assert response.status_code == 401
    assert message in response.json()["error"]
    assert passkit_sandbox.members() == []
    assert passkit_sandbox.stats()["auth_refused"] == {reason: 1}


def test_the_long_lived_token_is_accepted_as_bearer(passkit_sandbox: SandboxHandle) -> None:
    bearer = "Bearer " + SETTINGS.long_lived_token.get_secret_value()
    response = call(passkit_sandbox, "GET", f"/members/program/{LOYALTY}", auth=bearer)
    assert response.status_code == 200


def test_the_token_age_limit_is_configurable(passkit_sandbox: SandboxHandle) -> None:
    passkit_sandbox.configure(max_token_age_seconds=5)
    response = call(passkit_sandbox, "GET", f"/members/program/{LOYALTY}")
    assert response.status_code == 401
    assert response.json() == {"error": "jwt was issued too long ago"}


# -- members -------------------------------------------------------------------------------


def test_enrol_answers_a_22_character_id_and_stores_the_member(
    passkit_sandbox: SandboxHandle,
) -> None:
    member_id = enrol(
        passkit_sandbox,
        "crm-1",
        person={"forename": "Anna", "emailAddress": "anna@example.com"},
        points=0,
        metaData={"segment": "vip"},
    )

    assert len(member_id) == 22
    response = call(passkit_sandbox, "GET", f"/members/member/id/{member_id}")
    member = response.json()
    assert member["externalId"] == "crm-1"
    assert member["person"] == {"forename": "Anna", "emailAddress": "anna@example.com"}
    assert member["metaData"] == {"segment": "vip"}
    assert member["status"] == "ENROLLED"
    assert "points" not in member  # protojson leaves zero values out


def test_a_duplicate_external_id_is_409_and_no_twin(passkit_sandbox: SandboxHandle) -> None:
    enrol(passkit_sandbox, "crm-1")
    body = {"programId": LOYALTY, "tierId": "gold", "externalId": "crm-1"}

    response = call(passkit_sandbox, "POST", "/members/member", body)

    assert response.status_code == 409
    assert response.json()["code"] == 6
    assert len(passkit_sandbox.members()) == 1
    assert passkit_sandbox.stats()["creates"] == 1


def test_the_duplicate_status_is_configurable(passkit_sandbox: SandboxHandle) -> None:
    passkit_sandbox.configure(duplicate_status=400)
    enrol(passkit_sandbox, "crm-1")
    body = {"programId": LOYALTY, "tierId": "base", "externalId": "crm-1"}
    assert call(passkit_sandbox, "POST", "/members/member", body).status_code == 400


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"visits": 1}, "visits"),
        ({"person": {"forename": "Ada", "nickname": "A"}}, "person.nickname"),
    ],
)
def test_an_unknown_member_or_person_field_is_refused_as_protojson_does(
    passkit_sandbox: SandboxHandle, extra: dict[str, Any], field: str
) -> None:
    # When a member is enrolled with a field Member (or Person) does not have
    body = {"programId": LOYALTY, "tierId": "base", "externalId": "crm-1", **extra}
    response = call(passkit_sandbox, "POST", "/members/member", body)
    # Then grpc-gateway's error body names it, and nothing is stored
    assert response.status_code == 400
    assert response.json() == {
        "code": 3,
        "message": f'proto: unknown field "{field}"',
        "details": [],
    }
    assert passkit_sandbox.members() == []
    # And an update with it is refused too
    member = enrol(passkit_sandbox, "crm-2", person={"forename": "Ada"})
    update = {"id": member, **extra}
    assert call(passkit_sandbox, "PUT", "/members/member", update).status_code == 400


def test_ignore_drops_unknown_fields_and_keeps_the_rest(passkit_sandbox: SandboxHandle) -> None:
    passkit_sandbox.configure(unknown_properties="ignore")
    person = {"forename": "Ada", "nickname": "A"}
    member = enrol(passkit_sandbox, "crm-1", visits=1, person=person, metaData={"tier": "gold"})
    stored = call(passkit_sandbox, "GET", f"/members/member/id/{member}").json()
    assert "visits" not in stored
    assert stored["person"] == {"forename": "Ada"}
    assert stored["metaData"] == {"tier": "gold"}


def test_the_same_external_id_may_live_in_another_program(passkit_sandbox: SandboxHandle) -> None:
    enrol(passkit_sandbox, "crm-1")
    body = {"programId": WELCOME, "tierId": "base", "externalId": "crm-1"}
    assert call(passkit_sandbox, "POST", "/members/member", body).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"programId": LOYALTY, "externalId": "x"}, 400),
        ({"programId": "nope", "tierId": "base"}, 404),
        ({"programId": LOYALTY, "tierId": "platinum"}, 404),
        ({"programId": LOYALTY, "tierId": "base", "memberDetails": {}}, 400),
        ({"programId": LOYALTY, "tierId": "base", "metaData": {"n": 1}}, 400),
    ],
)
def test_invalid_enrols_are_refused_and_store_nothing(
    passkit_sandbox: SandboxHandle, body: dict[str, Any], status: int
) -> None:
    response = call(passkit_sandbox, "POST", "/members/member", body)
    assert response.status_code == status
    assert set(response.json()) == {"code", "message", "details"}
    assert passkit_sandbox.members() == []


def test_get_by_external_id_needs_the_program(passkit_sandbox: SandboxHandle) -> None:
    member_id = enrol(passkit_sandbox, "crm/1 ä")
    found = call(passkit_sandbox, "GET", f"/members/member/externalId/{LOYALTY}/crm%2F1%20%C3%A4")
    assert found.json()["id"] == member_id
    other = call(passkit_sandbox, "GET", f"/members/member/externalId/{WELCOME}/crm%2F1%20%C3%A4")
    assert other.status_code == 404


def test_a_patch_style_update_ignores_falsey_values(passkit_sandbox: SandboxHandle) -> None:
    member_id = enrol(
        passkit_sandbox, "crm-1", person={"forename": "Anna"}, points=5, metaData={"s": "vip"}
    )
    body = {
        "id": member_id,
        "points": 0,
        "optOut": False,
        "person": {"forename": "", "surname": "K"},
        "metaData": {"s": ""},
    }

    assert call(passkit_sandbox, "PUT", "/members/member", body).json() == {"id": member_id}

    member = call(passkit_sandbox, "GET", f"/members/member/id/{member_id}").json()
    assert member["points"] == 5
    assert member["person"] == {"forename": "Anna", "surname": "K"}
    assert member["metaData"] == {"s": "vip"}


def test_operation_put_sets_falsey_values(passkit_sandbox: SandboxHandle) -> None:
    member_id = enrol(passkit_sandbox, "crm-1", person={"forename": "Anna"}, optOut=True)
    before = call(passkit_sandbox, "GET", f"/members/member/id/{member_id}").json()
    body = {"id": member_id, "optOut": False, "operation": "OPERATION_PUT"}
    call(passkit_sandbox, "PUT", "/members/member", body)
    member = call(passkit_sandbox, "GET", f"/members/member/id/{member_id}").json()
    assert before["optOut"] is True
    assert "optOut" not in member  # false, which protojson leaves out


def test_update_by_external_id_and_program(passkit_sandbox: SandboxHandle) -> None:
    member_id = enrol(passkit_sandbox, "crm-1")
    body = {"externalId": "crm-1", "programId": LOYALTY, "notes": "hi"}
    assert call(passkit_sandbox, "PUT", "/members/member", body).json() == {"id": member_id}


def test_delete_takes_a_json_body_and_frees_the_external_id(
    passkit_sandbox: SandboxHandle,
) -> None:
    member_id = enrol(passkit_sandbox, "crm-1")

    response = call(passkit_sandbox, "DELETE", "/members/member", {"id": member_id})

    assert (response.status_code, response.json()) == (200, {})
    assert call(passkit_sandbox, "GET", f"/members/member/id/{member_id}").status_code == 404
    again = call(passkit_sandbox, "DELETE", "/members/member", {"id": member_id})
    assert again.status_code == 404
    assert enrol(passkit_sandbox, "crm-1") != member_id


def test_points_earn_burn_and_set(passkit_sandbox: SandboxHandle) -> None:
    member_id = enrol(passkit_sandbox, "crm-1", points=10)

    earned = call(
        passkit_sandbox, "PUT", "/members/member/points/earn", {"id": member_id, "points": 5}
    )
    burned = call(
        passkit_sandbox, "PUT", "/members/member/points/burn", {"id": member_id, "points": 3}
    )
    too_many = call(
        passkit_sandbox, "PUT", "/members/member/points/burn", {"id": member_id, "points": 99}
    )
    zeroed = call(
        passkit_sandbox, "PUT", "/members/member/points/set", {"id": member_id, "resetPoints": True}
    )

    assert earned.json()["points"] == 15
    assert burned.json()["points"] == 12
    assert too_many.status_code == 400
    assert zeroed.json()["points"] == 0
    assert "points" not in call(passkit_sandbox, "GET", f"/members/member/id/{member_id}").json()


def test_an_expiry_in_the_past_expires_the_member(passkit_sandbox: SandboxHandle) -> None:
    member_id = enrol(passkit_sandbox, "crm-1")
    body = {"id": member_id, "expiryDate": "2020-01-01T00:00:00Z"}
    assert call(passkit_sandbox, "PUT", "/members/member/updateExpiry", body).status_code == 200
    member = call(passkit_sandbox, "GET", f"/members/member/id/{member_id}").json()
    assert member["status"] == "EXPIRED"
    assert passkit_sandbox.members()[0]["voided"] is True


def test_lists_stream_one_result_per_line_25_by_default(passkit_sandbox: SandboxHandle) -> None:
    for n in range(30):
        enrol(passkit_sandbox, f"crm-{n:02}")

    first = call(passkit_sandbox, "POST", f"/members/member/list/{LOYALTY}", {})
    rest = call(
        passkit_sandbox,
        "POST",
        f"/members/member/list/{LOYALTY}",
        {"filters": {"limit": 25, "offset": 25}},
    )
    everything = call(
        passkit_sandbox, "POST", f"/members/member/list/{LOYALTY}", {"filters": {"limit": -1}}
    )

    assert [set(line) for line in lines(first)] == [{"result"}] * 25
    assert [x["result"]["externalId"] for x in lines(rest)] == [f"crm-{n}" for n in range(25, 30)]
    assert len(lines(everything)) == 30


def test_programs_and_tiers_are_listed(passkit_sandbox: SandboxHandle) -> None:
    programs = lines(call(passkit_sandbox, "POST", "/members/programs/list", {"limit": -1}))
    tiers = lines(call(passkit_sandbox, "POST", "/members/tiers/list", {"programId": LOYALTY}))
    assert [p["result"]["name"] for p in programs] == [
        "Loyalty Card",
        "Welcome Discount",
        "Event Ticket",
    ]
    assert [(t["result"]["id"], t["result"]["name"]) for t in tiers] == [
        ("base", "Base"),
        ("gold", "Gold"),
    ]


def test_messages_are_sent_to_passes_and_recorded(passkit_sandbox: SandboxHandle) -> None:
    member_id = enrol(passkit_sandbox, "crm-1")
    message = call(passkit_sandbox, "POST", "/message", {"title": "Hi", "plainTextContent": "x"})
    body = {"messageId": message.json()["id"], "passIds": {"ids": [member_id]}}
    sent = call(passkit_sandbox, "POST", "/message/send", body)
    assert sent.json() == {"count": 1}
    assert [(m["passId"], m["plainTextContent"]) for m in passkit_sandbox.messages()] == [
        (member_id, "x")
    ]


# -- faults --------------------------------------------------------------------------------


def test_a_503_burst_answers_503_for_the_configured_run(passkit_sandbox: SandboxHandle) -> None:
    passkit_sandbox.configure(error_503_probability=1.0, error_503_burst=3)
    path = f"/members/program/{LOYALTY}"
    assert call(passkit_sandbox, "GET", path).status_code == 503
    passkit_sandbox.configure(error_503_probability=0.0)

    statuses = [call(passkit_sandbox, "GET", path).status_code for _ in range(4)]

    assert statuses == [503, 503, 503, 200]
    assert passkit_sandbox.stats()["faults"]["503"] == 4


def test_commit_then_fail_stores_the_member_and_answers_500(
    passkit_sandbox: SandboxHandle,
) -> None:
    passkit_sandbox.configure(commit_then_fail_probability=1.0)
    body = {"programId": LOYALTY, "tierId": "base", "externalId": "crm-1"}

    response = call(passkit_sandbox, "POST", "/members/member", body)

    assert response.status_code == 500
    assert [m["externalId"] for m in passkit_sandbox.members()] == ["crm-1"]


def test_a_stream_can_break_off_with_an_error_line(passkit_sandbox: SandboxHandle) -> None:
    for n in range(4):
        enrol(passkit_sandbox, f"crm-{n}")
    passkit_sandbox.configure(stream_error_probability=1.0)

    response = call(passkit_sandbox, "POST", f"/members/member/list/{LOYALTY}", {})

    assert response.status_code == 200
    got = lines(response)
    assert [set(x) for x in got] == [{"result"}, {"result"}, {"error"}]
    assert got[-1]["error"]["code"] == 14


def test_seeded_faults_repeat_with_the_same_seed(passkit_sandbox: SandboxHandle) -> None:
    def run() -> list[int]:
        passkit_sandbox.reset()
        passkit_sandbox.configure(error_500_probability=0.3, error_503_probability=0.2, seed=7)
        path = f"/members/program/{LOYALTY}"
        return [call(passkit_sandbox, "GET", path).status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert {500, 503, 200} <= set(first)


def test_config_refuses_unknown_or_invalid_values(passkit_sandbox: SandboxHandle) -> None:
    response = httpx.post(
        passkit_sandbox.base_url + "/_sandbox/config", json={"error_503_probability": 2}
    )
    assert response.status_code == 422
    response = httpx.post(passkit_sandbox.base_url + "/_sandbox/config", json={"nope": 1})
    assert response.status_code == 422


def test_delete_externally_removes_a_member(passkit_sandbox: SandboxHandle) -> None:
    member_id = enrol(passkit_sandbox, "crm-1")
    passkit_sandbox.delete_externally(member_id)
    assert call(passkit_sandbox, "GET", f"/members/member/id/{member_id}").status_code == 404
    assert passkit_sandbox.members()[0]["deleted"] is True


# -- rate limit and webhooks ---------------------------------------------------------------


def test_a_configured_budget_answers_429_with_retry_after(passkit_sandbox: SandboxHandle) -> None:
    passkit_sandbox.configure(rate_limit_per_minute=2)
    path = f"/members/program/{LOYALTY}"

    statuses = [call(passkit_sandbox, "GET", path) for _ in range(3)]

    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["Retry-After"]) >= 1
    assert statuses[2].json()["code"] == 8
    assert passkit_sandbox.stats()["rate_limited"] == 1


def subscribe(sandbox: SandboxHandle, url: str, events: list[Any]) -> httpx.Response:
    body = {
        "classId": LOYALTY,
        "protocol": "MEMBERSHIP",
        "passEventId": events,
        "status": "INTEGRATION_ACTIVE",
        "configType": "WEBHOOK",
        "configuration": json.dumps({"targetUrl": url}),
    }
    return call(sandbox, "POST", "/integrations/sink", body)


def test_sinks_get_pass_events_with_the_documented_verbs(
    passkit_sandbox: SandboxHandle, receiver: Receiver
) -> None:
    events = [
        "PASS_EVENT_RECORD_CREATED",
        "PASS_EVENT_INSTALLED",
        "PASS_EVENT_UNINSTALLED",
        "PASS_EVENT_RECORD_DELETED",
    ]
    assert subscribe(passkit_sandbox, receiver.url, events).status_code == 200
    member_id = enrol(passkit_sandbox, "crm-1", person={"emailAddress": "a@example.com"})

    installed = httpx.post(
        f"{passkit_sandbox.base_url}/_sandbox/members/{member_id}/install",
        json={"platform": "ANDROID"},
    )
    httpx.post(f"{passkit_sandbox.base_url}/_sandbox/members/{member_id}/remove")
    call(passkit_sandbox, "PUT", "/members/member", {"id": member_id, "notes": "x"})  # not asked
    call(passkit_sandbox, "DELETE", "/members/member", {"id": member_id})

    assert installed.json() == {"id": member_id, "event": "PASS_EVENT_INSTALLED", "sent": 1}
    assert [(m, b["event"]) for m, _p, b in receiver.calls] == [
        ("POST", "PASS_EVENT_RECORD_CREATED"),
        ("PUT", "PASS_EVENT_INSTALLED"),
        ("PUT", "PASS_EVENT_UNINSTALLED"),
        ("DELETE", "PASS_EVENT_RECORD_DELETED"),
    ]
    assert {p for _m, p, _b in receiver.calls} == {"/hook?token=t"}
    body = receiver.calls[1][2]
    assert body["pass"]["id"] == member_id
    assert body["pass"]["classId"] == LOYALTY
    assert body["pass"]["externalId"] == "crm-1"
    assert body["pass"]["metadata"] == {"status": "PASS_INSTALLED", "platform": "ANDROID"}
    assert body["pass"]["recordData"]["members.member.externalId"] == "crm-1"
    assert body["pass"]["recordData"]["person.emailAddress"] == "a@example.com"


def test_webhooks_can_carry_numeric_enums(
    passkit_sandbox: SandboxHandle, receiver: Receiver
) -> None:
    passkit_sandbox.configure(webhook_numeric_enums=True)
    subscribe(passkit_sandbox, receiver.url, [2])
    member_id = enrol(passkit_sandbox, "crm-1")
    httpx.post(f"{passkit_sandbox.base_url}/_sandbox/members/{member_id}/install")
    assert [(b["event"], b["pass"]["protocol"]) for _m, _p, b in receiver.calls] == [(2, 100)]


@pytest.mark.parametrize(
    "change",
    [
        {"configuration": {"targetUrl": "http://x/"}},
        {"configuration": '{"targetUrl": "ftp://x/"}'},
        {"passEventId": ["PASS_EVENT_EXPLODED"]},
        {"classId": "nope"},
    ],
)
def test_a_bad_sink_is_refused(passkit_sandbox: SandboxHandle, change: dict[str, Any]) -> None:
    body = {
        "classId": LOYALTY,
        "passEventId": ["PASS_EVENT_INSTALLED"],
        "configuration": json.dumps({"targetUrl": "http://x/"}),
        **change,
    }
    response = call(passkit_sandbox, "POST", "/integrations/sink", body)
    assert response.status_code in (400, 404)
    assert httpx.get(f"{passkit_sandbox.base_url}/_sandbox/sinks").json()["count"] == 0


def test_a_running_sandbox_can_be_attached_by_url(passkit_sandbox: SandboxHandle) -> None:
    handle = attach(passkit_sandbox.base_url + "/", SETTINGS)
    enrol(passkit_sandbox, "crm-1")
    assert handle.base_url == passkit_sandbox.base_url
    assert [p.external_id for p in handle.state()] == ["crm-1"]
    assert handle.account_overrides()["secret"] == SECRET
