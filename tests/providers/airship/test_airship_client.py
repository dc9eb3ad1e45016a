"""AirshipClient: every request shape (from the vendor's documented examples) and the error
mapping, against respx.

The shapes: `Api-Revision: 1.2` on every call; Basic `base64(projectKey:projectSecret)`; or a
bearer from `POST https://oauth2.asnapius.com/token` (form `grant_type=client_credentials`,
`scope=wpas …`, Basic with the URL-encoded client id and secret); create
`POST /v1/pass/{templateId}/id/{externalId}` with `{"fields": {"<name>": {"value": …}}}`;
update `PUT /v1/pass/template/{templateId}/id/{externalId}` (→ {"ticketId"}); void by
`headers.expirationDate.label`; lists `{count, passes, pagination}`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr

from worker.config import ConfigError
from worker.providers.airship.client import AirshipClient, error_messages
from worker.providers.airship.settings import AirshipSettings
from worker.providers.common.http import CallRecord
from worker.providers.errors import (
    AlreadyExistsError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TemplateNotFoundError,
    TransientError,
)
from worker.providers.port import PassProvider

BASE = "https://wallet-api.urbanairship.com/v1"
TOKEN_URL = "https://oauth2.asnapius.com/token"
KEY = "JQIMcndxIHWy2"
SECRET = "60a6f77b-1234-4c3b-9d7e-0f1e2d3c4b5a"
TEMPLATE = "158327"
EXT = "passsync-loyalty-cust-1"
PASS_ID = "149440311"
NOW = 1_780_000_000.0
CREATED = {
    "id": 149440311,
    "createdAt": "2026-12-04T10:00:00.000Z",
    "publicUrl": {
        "path": "https://wallet-api.urbanairship.com/v1/pass/149440311/download",
        "type": "multiple",
    },
    "status": "not_been_installed",
}
NOT_FOUND = {
    "code": 404,
    "description": "The resource is no longer at that location.",
    "details": "object not found :Pass not found! Please pass a valid external Id instead of x",
}


def make_settings(**overrides: Any) -> AirshipSettings:
    values: dict[str, Any] = {
        "api_key": SecretStr(KEY),
        "secret": SecretStr(SECRET),
        "backoff_seconds": 0.0,
        "max_attempts": 3,
        "adaptive_links": False,
    }
    return AirshipSettings(**(values | overrides))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(records: list[CallRecord]) -> Iterator[AirshipClient]:
    with AirshipClient(make_settings(), on_attempt=records.append, clock=lambda: NOW) as c:
        yield c


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def body_of(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def remembered(client: AirshipClient, api: respx.MockRouter) -> None:
    """Make the client know PASS_ID's template and external id (as after its create)."""
    api.post(f"{BASE}/pass/{TEMPLATE}/id/{EXT}").respond(200, json=CREATED)
    client.create_pass(template_id=TEMPLATE, user_provided_id=EXT, fields={"tier": "gold"})


def test_the_client_satisfies_the_port(client: AirshipClient) -> None:
    provider: PassProvider = client  # mypy checks the shape
    assert provider.name == "airship"


def test_create_posts_the_fields_under_the_external_id_with_basic_auth_and_api_revision(
    client: AirshipClient, api: respx.MockRouter, records: list[CallRecord]
) -> None:
    # Given Airship answers a create as documented
    route = api.post(f"{BASE}/pass/{TEMPLATE}/id/{EXT}").respond(200, json=CREATED)
    # When a pass is created
    made = client.create_pass(
        template_id=TEMPLATE, user_provided_id=EXT, fields={"firstName": "Ada", "points": 1250}
    )
    # Then the request is the documented one
    request = route.calls.last.request
    assert request.headers["Api-Revision"] == "1.2"
    assert request.headers["Authorization"] == basic(KEY, SECRET)
    assert request.headers["Content-Type"] == "application/json"
    assert body_of(route) == {"fields": {"firstName": {"value": "Ada"}, "points": {"value": 1250}}}
    # And the answer's id and public URL become the pass and its links
    assert made.pass_id == PASS_ID
    assert made.user_provided_id == EXT and made.template_id == TEMPLATE
    assert made.iphone_uri == CREATED["publicUrl"]["path"]  # type: ignore[index]
    assert made.download_page == made.iphone_uri
    assert [(r.action, r.method, r.path, r.status) for r in records] == [
        ("create", "POST", "/pass/{templateId}/id/{externalId}", 200)
    ]


def test_create_answer_with_url_instead_of_public_url_is_read(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    api.post(f"{BASE}/pass/{TEMPLATE}/id/{EXT}").respond(
        200, json={"id": 7, "url": "https://example.test/p/7"}
    )
    made = client.create_pass(template_id=TEMPLATE, user_provided_id=EXT, fields={})
    assert (made.pass_id, made.download_page) == ("7", "https://example.test/p/7")


def test_create_of_a_used_external_id_is_already_exists(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    # Given Airship answers 400 for a used external id (the support article's wording)
    api.post(f"{BASE}/pass/{TEMPLATE}/id/{EXT}").respond(
        400,
        json={
            "code": 400,
            "description": "Bad Request",
            "details": "External ID already exists for this template",
        },
    )
    # Then the engine is told to adopt it
    with pytest.raises(AlreadyExistsError):
        client.create_pass(template_id=TEMPLATE, user_provided_id=EXT, fields={})


def test_a_bare_400_on_create_is_a_duplicate_only_when_the_pass_is_found(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    api.post(f"{BASE}/pass/{TEMPLATE}/id/{EXT}").respond(400, json={"code": 400})
    lookup = api.get(f"{BASE}/pass/id/{EXT}").respond(200, json={**CREATED, "externalId": EXT})
    with pytest.raises(AlreadyExistsError):
        client.create_pass(template_id=TEMPLATE, user_provided_id=EXT, fields={})
    assert lookup.call_count == 1
    lookup.respond(404, json=NOT_FOUND)
    with pytest.raises(RejectedError) as raised:
        client.create_pass(template_id=TEMPLATE, user_provided_id=EXT, fields={})
    assert not isinstance(raised.value, AlreadyExistsError)
    assert raised.value.status == 400


def test_create_on_an_unknown_template_is_template_not_found(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    api.post(f"{BASE}/pass/{TEMPLATE}/id/{EXT}").respond(404, json=NOT_FOUND)
    with pytest.raises(TemplateNotFoundError):
        client.create_pass(template_id=TEMPLATE, user_provided_id=EXT, fields={})


def test_update_puts_the_fields_by_external_id(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    remembered(client, api)
    route = api.put(f"{BASE}/pass/template/{TEMPLATE}/id/{EXT}").respond(
        200, json={"ticketId": 12345}
    )
    client.update_pass(PASS_ID, {"tier": "silver"})
    assert body_of(route) == {"fields": {"tier": {"value": "silver"}}}
    assert route.calls.last.request.headers["Api-Revision"] == "1.2"


def test_update_of_a_pass_this_client_did_not_create_reads_it_first(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    got = api.get(f"{BASE}/pass/{PASS_ID}").respond(
        200, json={**CREATED, "templateId": int(TEMPLATE), "externalId": EXT}
    )
    route = api.put(f"{BASE}/pass/template/{TEMPLATE}/id/{EXT}").respond(200, json={"ticketId": 1})
    client.update_pass(PASS_ID, {"tier": "silver"})
    client.update_pass(PASS_ID, {"tier": "gold"})
    assert got.call_count == 1  # remembered after the first read
    assert route.call_count == 2


def test_update_of_a_gone_pass_is_not_found(client: AirshipClient, api: respx.MockRouter) -> None:
    remembered(client, api)
    api.put(f"{BASE}/pass/template/{TEMPLATE}/id/{EXT}").respond(404, json=NOT_FOUND)
    with pytest.raises(NotFoundError) as raised:
        client.update_pass(PASS_ID, {"tier": "silver"})
    assert "Pass not found" in raised.value.message


def test_push_is_a_field_change_with_the_message_as_change_message(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    remembered(client, api)
    route = api.put(f"{BASE}/pass/template/{TEMPLATE}/id/{EXT}").respond(200, json={"ticketId": 2})
    client.send_push(PASS_ID, "You are now gold!")
    assert body_of(route) == {
        "fields": {"message": {"value": "You are now gold!", "changeMessage": "%@"}}
    }
    with pytest.raises(RejectedError):
        client.send_push(PASS_ID, "  ")
    assert route.call_count == 1


def test_void_and_unvoid_set_the_expiration_date_label(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    remembered(client, api)
    route = api.put(f"{BASE}/pass/template/{TEMPLATE}/id/{EXT}").respond(200, json={"ticketId": 3})
    assert client.set_voided(PASS_ID, True).voided is True
    assert body_of(route) == {"headers": {"expirationDate": {"label": "voided"}}}
    assert client.set_voided(PASS_ID, False).voided is False
    # 730 days after NOW (2026-05-28T20:26Z)
    assert body_of(route) == {
        "headers": {"expirationDate": {"value": "2028-05-27T20:26Z", "label": "valid"}}
    }


def test_get_by_id_and_by_external_id(client: AirshipClient, api: respx.MockRouter) -> None:
    full = {
        **CREATED,
        "templateId": 158327,
        "externalId": EXT,
        "fields": {"tier": {"value": "gold", "label": "Tier", "fieldType": "text"}},
        "headers": {"expirationDate": {"value": "2030-01-01T00:00Z", "label": "voided"}},
    }
    api.get(f"{BASE}/pass/{PASS_ID}").respond(200, json=full)
    api.get(f"{BASE}/pass/id/{EXT}").respond(200, json=full)
    by_id, by_ext = client.get_pass(PASS_ID), client.get_pass(EXT)
    assert by_id == by_ext
    assert (by_id.pass_id, by_id.user_provided_id, by_id.template_id) == (PASS_ID, EXT, TEMPLATE)
    assert by_id.fields == {"tier": "gold"}
    assert by_id.voided is True


def test_delete_by_id_and_a_retry_after_a_lost_answer(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    route = api.delete(f"{BASE}/pass/{PASS_ID}")
    route.side_effect = [httpx.Response(503), httpx.Response(404, json=NOT_FOUND)]
    client.delete_pass(PASS_ID)  # the 404 on the retry: our first attempt deleted it
    route.side_effect = None
    route.respond(404, json=NOT_FOUND)
    with pytest.raises(NotFoundError):
        client.delete_pass(PASS_ID)
    client.delete_pass(PASS_ID, missing_ok=True)


def test_list_passes_pages_by_template(client: AirshipClient, api: respx.MockRouter) -> None:
    rows = [{"id": 1000 + i, "externalId": f"e{i}", "status": "installed"} for i in range(3)]
    route = api.get(f"{BASE}/pass")
    route.side_effect = [
        httpx.Response(200, json={"count": 3, "passes": rows[:2], "pagination": {"page": 1}}),
        httpx.Response(200, json={"count": 3, "passes": rows[2:], "pagination": {"page": 2}}),
    ]
    with AirshipClient(make_settings(page_size=2), clock=lambda: NOW) as small:
        found = list(small.iter_passes(TEMPLATE))
    assert [r["id"] for r in found] == [1000, 1001, 1002]
    assert [dict(c.request.url.params) for c in route.calls] == [
        {"templateId": TEMPLATE, "pageSize": "2", "page": "1"},
        {"templateId": TEMPLATE, "pageSize": "2", "page": "2"},
    ]


def test_templates_by_name_from_the_headers_list(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    api.get(f"{BASE}/template/headers").respond(
        200,
        json={
            "count": 3,
            "templateHeaders": [
                {"id": 158327, "name": "Loyalty Card", "vendor": "Apple", "deleted": False},
                {"id": 158328, "name": "Old", "vendor": "Apple", "deleted": True},
                {"id": 158329, "name": "Coupon", "vendor": "Google", "disabled": False},
            ],
            "pagination": {"page": 1, "pageSize": 100},
        },
    )
    found = [(t.template_id, t.name) for t in client.list_templates()]
    assert found == [("158327", "Loyalty Card"), ("158329", "Coupon")]


def test_statistics_by_external_id(client: AirshipClient, api: respx.MockRouter) -> None:
    api.get(f"{BASE}/pass/id/{EXT}/stats").respond(
        200,
        json={"total": 3, "installed": 2, "uninstalled": 1, "templates": [{"id": 158327}]},
    )
    stats = client.statistics(EXT)
    assert (stats.total, stats.installed, stats.uninstalled) == (3, 2, 1)


def test_adaptive_link_becomes_the_download_page(
    records: list[CallRecord], api: respx.MockRouter
) -> None:
    api.post(f"{BASE}/pass/{TEMPLATE}/id/{EXT}").respond(200, json=CREATED)
    link = api.post(f"{BASE}/links/adaptive").respond(
        200, json={"adaptiveLinkId": "abc", "url": "https://wallet.example/al/abc"}
    )
    with AirshipClient(make_settings(adaptive_links=True), clock=lambda: NOW) as c:
        made = c.create_pass(template_id=TEMPLATE, user_provided_id=EXT, fields={"tier": "gold"})
    assert made.download_page == "https://wallet.example/al/abc"
    assert body_of(link) == {
        "iosTemplateId": 158327,
        "androidTemplateId": 158327,
        "payload": {"externalId": EXT, "fields": {"tier": {"value": "gold"}}},
    }
    # A refused link leaves the pass's own page as its link (and the pass created)
    link.respond(404, json=NOT_FOUND)
    with AirshipClient(make_settings(adaptive_links=True), clock=lambda: NOW) as c:
        made = c.create_pass(template_id=TEMPLATE, user_provided_id=EXT, fields={})
    assert made.download_page == CREATED["publicUrl"]["path"]  # type: ignore[index]


def test_callbacks_are_registered_on_the_project(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    with AirshipClient(make_settings(project_id="4242"), clock=lambda: NOW) as c:
        route = api.post(f"{BASE}/project/4242/settings/callback").respond(200, json={})
        c.register_callbacks("https://hooks.example/providers/air/callbacks/tok")
    assert body_of(route) == {
        "baseUrl": "https://hooks.example/providers/air/callbacks/tok",
        "headers": {},
    }
    with pytest.raises(RejectedError, match="project_id"):
        client.register_callbacks("https://hooks.example/x")


def test_eu_region_uses_the_eu_hosts() -> None:
    settings = make_settings(region="eu", auth="oauth2")
    assert settings.api_base() == "https://wallet-api.asnapieu.com/v1"
    assert settings.token_endpoint() == "https://oauth2.asnapieu.com/token"


# -- errors ------------------------------------------------------------------------------------


def test_429_is_rate_limited_with_retry_after_and_not_retried(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    route = api.get(f"{BASE}/pass/{PASS_ID}").respond(429, headers={"Retry-After": "7"})
    with pytest.raises(RateLimitedError) as raised:
        client.get_pass(PASS_ID)
    assert raised.value.retry_after == 7
    assert route.call_count == 1


def test_5xx_is_retried_then_transient(client: AirshipClient, api: respx.MockRouter) -> None:
    route = api.get(f"{BASE}/pass/{PASS_ID}").respond(500, json={"code": 500})
    with pytest.raises(TransientError):
        client.get_pass(PASS_ID)
    assert route.call_count == 3


def test_401_names_the_credentials_and_never_the_secret(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    api.get(f"{BASE}/pass/{PASS_ID}").respond(
        401, json={"code": 401, "description": "Unauthorized"}
    )
    with pytest.raises(RejectedError) as raised:
        client.get_pass(PASS_ID)
    assert raised.value.status == 401
    assert "project key and secret" in raised.value.message
    assert SECRET not in raised.value.message and KEY not in raised.value.message


def test_both_error_body_shapes_are_read() -> None:
    assert error_messages(NOT_FOUND) == [
        "The resource is no longer at that location.",
        NOT_FOUND["details"],
    ]
    assert error_messages(
        {
            "error": "Invalid",
            "error_code": 40001,
            "details": "field errors",
            "fieldErrors": [{"message": "value too long"}],
        }
    ) == ["Invalid", "field errors", "value too long"]


def test_missing_credentials_stop_at_start(api: respx.MockRouter) -> None:
    with pytest.raises(ConfigError, match="API_KEY"):
        AirshipClient(AirshipSettings())


def test_an_id_that_is_not_one_segment_never_reaches_the_network(
    client: AirshipClient, api: respx.MockRouter
) -> None:
    with pytest.raises(RejectedError):
        client.delete_pass("..")
    assert not api.calls


# -- OAuth2 ------------------------------------------------------------------------------------


def oauth_client(clock: Clock, **overrides: Any) -> AirshipClient:
    settings = make_settings(auth="oauth2", api_key=SecretStr("client id/1"), **overrides)
    return AirshipClient(settings, clock=clock)


def token_answer(value: str, expires_in: int = 3600) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": value,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": "wpas wadl wrpt wtmp",
        },
    )


def test_oauth_token_request_is_the_documented_form(clock: Clock, api: respx.MockRouter) -> None:
    token = api.post(TOKEN_URL).mock(return_value=token_answer("tok-1"))
    route = api.get(f"{BASE}/pass/{PASS_ID}").respond(200, json=CREATED)
    with oauth_client(clock, oauth_subject="app:JQIMcndxIHWy2") as c:
        c.get_pass(PASS_ID)
    request = token.calls.last.request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    # V: the client id and secret are URL-encoded before base64
    assert request.headers["Authorization"] == basic("client%20id%2F1", SECRET)
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "scope": ["wpas wadl wrpt wtmp"],
        "sub": ["app:JQIMcndxIHWy2"],
    }
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == "Bearer tok-1"
    assert sent.headers["Api-Revision"] == "1.2"


def test_oauth_token_is_cached_and_refreshed_before_it_expires(
    clock: Clock, api: respx.MockRouter
) -> None:
    token = api.post(TOKEN_URL)
    token.side_effect = [token_answer("tok-1"), token_answer("tok-2")]
    route = api.get(f"{BASE}/pass/{PASS_ID}").respond(200, json=CREATED)
    with oauth_client(clock) as c:
        c.get_pass(PASS_ID)
        clock.now += 3600 - 61  # a minute and a second before expiry: still good
        c.get_pass(PASS_ID)
        clock.now += 2  # within the refresh margin: a new token before any 401
        c.get_pass(PASS_ID)
    assert token.call_count == 2
    used = [c.request.headers["Authorization"] for c in route.calls]
    assert used == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_a_401_refreshes_the_token_once_and_repeats_the_request(
    clock: Clock, api: respx.MockRouter
) -> None:
    token = api.post(TOKEN_URL)
    token.side_effect = [token_answer("tok-1"), token_answer("tok-2")]
    route = api.get(f"{BASE}/pass/{PASS_ID}")
    route.side_effect = [httpx.Response(401, json={"code": 401}), httpx.Response(200, json=CREATED)]
    with oauth_client(clock) as c:
        assert c.get_pass(PASS_ID).pass_id == PASS_ID
    assert token.call_count == 2
    assert [c.request.headers["Authorization"] for c in route.calls] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_a_second_401_is_a_refused_credential_not_a_token_storm(
    clock: Clock, api: respx.MockRouter
) -> None:
    token = api.post(TOKEN_URL).mock(side_effect=lambda _r: token_answer("tok"))
    api.get(f"{BASE}/pass/{PASS_ID}").respond(401, json={"code": 401})
    with oauth_client(clock) as c, pytest.raises(RejectedError) as raised:
        c.get_pass(PASS_ID)
    assert raised.value.status == 401
    assert token.call_count == 2  # the first token, and one refresh


def test_refused_client_credentials_are_a_401_rejection(
    clock: Clock, api: respx.MockRouter
) -> None:
    api.post(TOKEN_URL).respond(401, json={"error": "invalid_client"})
    route = api.get(f"{BASE}/pass/{PASS_ID}")
    with oauth_client(clock) as c, pytest.raises(RejectedError) as raised:
        c.get_pass(PASS_ID)
    assert raised.value.status == 401
    assert SECRET not in raised.value.message
    assert not route.called


def test_a_rotated_secret_is_used_without_a_new_client(clock: Clock, api: respx.MockRouter) -> None:
    token = api.post(TOKEN_URL).mock(side_effect=lambda _r: token_answer("tok"))
    api.get(f"{BASE}/pass/{PASS_ID}").respond(200, json=CREATED)
    with oauth_client(clock) as c:
        c.get_pass(PASS_ID)
        c.set_credentials(lambda: ("client id/1", "rotated-secret"))
        c.get_pass(PASS_ID)
    assert [c.request.headers["Authorization"] for c in token.calls] == [
        basic("client%20id%2F1", SECRET),
        basic("client%20id%2F1", "rotated-secret"),
    ]
