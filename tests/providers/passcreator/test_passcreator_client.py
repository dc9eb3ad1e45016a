"""PasscreatorClient: request shapes and error mapping (respx), then against the sandbox."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from worker.config import ConfigError
from worker.providers.errors import (
    AlreadyExistsError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from worker.providers.passcreator.client import (
    CallRecord,
    PasscreatorClient,
    envelope_messages,
    parse_retry_after,
    parse_v1_pass,
)
from worker.providers.passcreator.models import PassDetails, PassWriteResult
from worker.providers.passcreator.sandbox.server import SandboxHandle
from worker.providers.passcreator.sandbox.store import template_id_for
from worker.providers.passcreator.settings import PasscreatorSettings
from worker.providers.port import PassProvider, ProviderTemplate, TemplateField

BASE = "https://passcreator.test"
KEY = "pc-live-key-9c1e77"
TEMPLATE = "5b3f2f9f-0000-4000-8000-000000000001"
PASS_ID = "2e6018be-1111-4222-8333-444455556666"
CREATED = {
    "success": True,
    "description": "Request succeeded",
    "errors": [],
    "data": {
        "identifier": PASS_ID,
        "downloadPage": "https://dl.test/p",
        "iPhoneUri": "https://dl.test/i",
        "androidUri": "https://dl.test/a",
        "barcodeValue": "BC-1",
    },
    "statusCode": 200,
}


def make_settings(**overrides: Any) -> PasscreatorSettings:
    values: dict[str, Any] = {
        "base_url": BASE,
        "api_key": SecretStr(KEY),
        "backoff_seconds": 0.0,
        "max_attempts": 3,
        "timeout_seconds": 2.5,
    }
    return PasscreatorSettings(**(values | overrides))


def error_body(status: int, errors: list[Any], description: str = "Invalid data.") -> Any:
    return {
        "success": False,
        "description": description,
        "errors": errors,
        "data": [],
        "statusCode": status,
    }


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(records: list[CallRecord]) -> Iterator[PasscreatorClient]:
    with PasscreatorClient(make_settings(), on_attempt=records.append) as pc:
        yield pc


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


def outcomes(records: list[CallRecord]) -> list[tuple[int, int | None, str]]:
    return [(r.attempt, r.status, r.outcome) for r in records]


# -- request shapes ----------------------------------------------------------------------------


def test_client_satisfies_the_port(client: PasscreatorClient) -> None:
    provider: PassProvider = client
    assert provider.name == "passcreator"


def test_create_sends_v3_body_with_uniqueness_guard_and_raw_key(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    # given
    route = api.post("/api/v3/pass").mock(return_value=httpx.Response(200, json=CREATED))
    # when
    created = client.create_pass(
        template_id=TEMPLATE, user_provided_id="passsync-c1", fields={"firstName": "Ada"}
    )
    # then
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == "/api/v3/pass"
    assert dict(request.url.params) == {"async": "false"}
    assert request.headers["Authorization"] == KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request.extensions["timeout"] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}
    assert records[0].pass_ref == "passsync-c1"
    assert sent_json(route) == {
        "data": {
            "templateId": TEMPLATE,
            "userProvidedId": "passsync-c1",
            "enforceUniqueUserProvidedId": True,
            "firstName": "Ada",
        }
    }
    assert created == PassWriteResult(
        pass_id=PASS_ID,
        user_provided_id="passsync-c1",
        template_id=TEMPLATE,
        fields={"firstName": "Ada"},
        download_page="https://dl.test/p",
        iphone_uri="https://dl.test/i",
        android_uri="https://dl.test/a",
        barcode_value="BC-1",
    )
    assert outcomes(records) == [(1, 200, "ok")]
    assert records[0].action == "create_pass"
    assert records[0].method == "POST"
    assert records[0].path == "/api/v3/pass"


def test_create_async_setting_sends_async_true(
    api: respx.MockRouter, records: list[CallRecord]
) -> None:
    route = api.post("/api/v3/pass").mock(return_value=httpx.Response(200, json=CREATED))
    with PasscreatorClient(make_settings(create_async=True)) as pc:
        pc.create_pass(template_id=TEMPLATE, user_provided_id="u", fields={})
    assert dict(route.calls.last.request.url.params) == {"async": "true"}


def test_create_fields_cannot_override_the_guard_keys(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    route = api.post("/api/v3/pass").mock(return_value=httpx.Response(200, json=CREATED))
    client.create_pass(
        template_id=TEMPLATE,
        user_provided_id="u",
        fields={"enforceUniqueUserProvidedId": False, "templateId": "other", "tier": "gold"},
    )
    assert sent_json(route)["data"] == {
        "templateId": TEMPLATE,
        "userProvidedId": "u",
        "enforceUniqueUserProvidedId": True,
        "tier": "gold",
    }


def test_update_patches_v3_with_data_wrapper(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    route = api.patch(f"/api/v3/pass/{PASS_ID}").mock(
        return_value=httpx.Response(200, json=CREATED)
    )
    updated = client.update_pass(PASS_ID, {"points": 12})
    request = route.calls.last.request
    assert request.method == "PATCH"
    assert request.headers["Authorization"] == KEY
    assert dict(request.url.params) == {}
    assert sent_json(route) == {"data": {"points": 12}}
    assert updated.pass_id == PASS_ID
    assert updated.fields == {"points": 12}
    assert records[0].path == "/api/v3/pass/{id}"


def test_identifiers_are_percent_encoded_into_one_path_segment(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    route = api.route(method="GET").mock(return_value=httpx.Response(404))
    with pytest.raises(NotFoundError):
        client.get_pass("a/b c?d")
    assert route.calls.last.request.url.raw_path == b"/api/pass/a%2Fb%20c%3Fd"


def test_empty_identifier_is_refused_without_a_request(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    route = api.route().mock(return_value=httpx.Response(200, json=CREATED))
    with pytest.raises(RejectedError, match="identifier is empty"):
        client.update_pass(" ", {"a": 1})
    assert route.call_count == 0
    assert records == []


def test_get_reads_the_v1_pass_object_leniently(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    # given a v1 object with voided as the string "true" and AndroidUri capitalised
    body = {
        "identifier": PASS_ID,
        "userProvidedId": "passsync-c1",
        "passTemplateGuid": TEMPLATE,
        "voided": "true",
        "linkToPassPage": "https://dl.test/page",
        "iPhoneUri": "https://dl.test/i",
        "AndroidUri": "https://dl.test/a",
        "additionalProperties": {"firstName": "Ada", "points": 3},
        "searchString": "x|y",
    }
    route = api.get("/api/pass/passsync-c1").mock(return_value=httpx.Response(200, json=body))
    # when
    found = client.get_pass("passsync-c1")
    # then
    assert route.calls.last.request.headers["Authorization"] == KEY
    assert found == PassDetails(
        pass_id=PASS_ID,
        user_provided_id="passsync-c1",
        template_id=TEMPLATE,
        voided=True,
        fields={"firstName": "Ada", "points": 3},
        download_page="https://dl.test/page",
        iphone_uri="https://dl.test/i",
        android_uri="https://dl.test/a",
        search_string="x|y",
    )


@pytest.mark.parametrize(
    ("voided", "expected"),
    [(True, True), (False, False), ("false", False), ("TRUE", True), (None, False), (0, False)],
)
def test_voided_accepts_bools_and_strings(voided: Any, expected: bool) -> None:
    assert parse_v1_pass({"identifier": "p", "voided": voided}).voided is expected


def test_v1_pass_without_properties_has_empty_fields_and_download_page_fallback() -> None:
    parsed = parse_v1_pass({"identifier": "p", "downloadPage": "https://d", "androidUri": "a"})
    assert parsed.fields == {}
    assert parsed.download_page == "https://d"
    assert parsed.android_uri == "a"


def test_v1_properties_as_a_list_of_items_are_keyed_by_name() -> None:
    parsed = parse_v1_pass(
        {"identifier": "p", "additionalProperties": [{"name": "tier", "value": "gold"}, {"x": 1}]}
    )
    assert parsed.fields == {"tier": "gold"}


def test_list_templates(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    rows = [{"identifier": "t1", "name": "Loyalty Card"}, {"identifier": "t2", "name": "Ticket"}]
    route = api.get("/api/pass-template").mock(return_value=httpx.Response(200, json=rows))
    assert client.list_templates() == [
        ProviderTemplate(template_id="t1", name="Loyalty Card"),
        ProviderTemplate(template_id="t2", name="Ticket"),
    ]
    assert route.calls.last.request.headers["Authorization"] == KEY
    assert outcomes(records) == [(1, 200, "ok")]


# The documented (deprecated) describe answer (reference §5), as Passcreator's docs show it.
DESCRIBED = {
    "identifier": "t1",
    "name": "Loyalty Card",
    "numberOfCreatedPasses": 12,
    "createPassUrl": "https://app.passcreator.com/api/pass?passtemplate=t1",
    "dynamicFields": {
        "passFrontFields": ["Name"],
        "passBackFields": [],
        "additionalProperties": {
            "firstName": "5b3f2f9f66a228.52093670",
            "tier": "5b3f2f9f66a228.52093671",
        },
    },
    "locations": [],
}


def test_template_fields_read_the_documented_describe(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    # Given the documented GET /api/pass-template/{id} answer
    route = api.get("/api/pass-template/t%201").mock(
        return_value=httpx.Response(200, json=DESCRIBED)
    )
    # When the template's fields are read
    fields = client.template_fields("t 1")
    # Then each additional property is a field with its property id, plus the v3 create keys
    assert fields == [
        TemplateField(name="firstName", id="5b3f2f9f66a228.52093670"),
        TemplateField(name="tier", id="5b3f2f9f66a228.52093671"),
        TemplateField(name="barcodeValue", type="pass"),
        TemplateField(name="groupingIdentifier", type="pass"),
    ]
    request = route.calls.last.request
    assert (request.method, request.headers["Authorization"]) == ("GET", KEY)
    assert request.url.raw_path == b"/api/pass-template/t%201"
    assert [(r.action, r.path) for r in records] == [("template_fields", "/api/pass-template/{id}")]


def test_template_fields_take_an_empty_property_map_as_php_sends_it(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    empty = DESCRIBED | {"dynamicFields": {"additionalProperties": []}}
    api.get("/api/pass-template/t1").mock(return_value=httpx.Response(200, json=empty))
    assert [f.name for f in client.template_fields("t1")] == ["barcodeValue", "groupingIdentifier"]


def test_template_fields_refuse_an_answer_without_the_property_map(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    api.get("/api/pass-template/t1").mock(
        return_value=httpx.Response(200, json={"identifier": "t1", "name": "Loyalty Card"})
    )
    with pytest.raises(TransientError, match=r"no dynamicFields\.additionalProperties"):
        client.template_fields("t1")
    assert [r.outcome for r in records] == ["invalid_body"] * 3


def test_template_fields_of_an_unknown_template_is_not_found(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    api.get("/api/pass-template/gone").mock(
        return_value=httpx.Response(404, json=error_body(404, [], "Template not found"))
    )
    with pytest.raises(NotFoundError):
        client.template_fields("gone")


def test_template_fields_path_is_configurable(api: respx.MockRouter) -> None:
    settings = make_settings(paths={"template_fields": "/api/v2/pass-template/{id}/describe"})
    route = api.get("/api/v2/pass-template/t1/describe").mock(
        return_value=httpx.Response(200, json={"success": True, "data": DESCRIBED})
    )
    with PasscreatorClient(settings) as pc:
        assert [f.name for f in pc.template_fields("t1")][:2] == ["firstName", "tier"]
    assert route.call_count == 1


# -- rate limiting -----------------------------------------------------------------------------


def test_429_with_retry_after_is_raised_at_once_with_that_delay(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    route = api.get("/api/pass-template").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "7"})
    )
    with pytest.raises(RateLimitedError) as err:
        client.list_templates()
    assert err.value.retry_after == 7.0
    assert err.value.status == 429
    # not retried inside the client: the shared limiter owns the pause
    assert route.call_count == 1
    assert outcomes(records) == [(1, 429, "rate_limited")]


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}, {"Retry-After": ""}])
def test_429_without_usable_retry_after_uses_the_configured_default(
    api: respx.MockRouter, headers: dict[str, str]
) -> None:
    api.get("/api/pass-template").mock(return_value=httpx.Response(429, headers=headers))
    with (
        PasscreatorClient(make_settings(default_retry_after_seconds=12.5)) as pc,
        pytest.raises(RateLimitedError) as err,
    ):
        pc.list_templates()
    assert err.value.retry_after == 12.5


def test_retry_after_header_name_is_configurable(api: respx.MockRouter) -> None:
    api.get("/api/pass-template").mock(
        return_value=httpx.Response(429, headers={"X-RateLimit-Reset": "3", "Retry-After": "9"})
    )
    settings = make_settings(retry_after_header="X-RateLimit-Reset")
    with PasscreatorClient(settings) as pc, pytest.raises(RateLimitedError) as err:
        pc.list_templates()
    assert err.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("2.5", 2.5),
        ("-4", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("nan", None),
        ("inf", None),
        ("tomorrow", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


# -- transient failures and retries ------------------------------------------------------------


def test_503_then_success_is_retried_and_every_attempt_recorded(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    route = api.post("/api/v3/pass").mock(
        side_effect=[httpx.Response(503, text="busy"), httpx.Response(200, json=CREATED)]
    )
    created = client.create_pass(template_id=TEMPLATE, user_provided_id="u", fields={})
    assert created.pass_id == PASS_ID
    assert route.call_count == 2
    assert outcomes(records) == [(1, 503, "server_error"), (2, 200, "ok")]


def test_5xx_on_every_attempt_gives_transient_error_after_max_attempts(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    route = api.get("/api/pass-template").mock(
        return_value=httpx.Response(500, json=error_body(500, ["boom"]))
    )
    with pytest.raises(TransientError) as err:
        client.list_templates()
    assert type(err.value) is TransientError
    assert err.value.status == 500
    assert err.value.message == "list_templates: Passcreator answered 500: boom"
    assert route.call_count == 3
    assert outcomes(records) == [
        (1, 500, "server_error"),
        (2, 500, "server_error"),
        (3, 500, "server_error"),
    ]


def test_timeout_then_success(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    api.get("/api/pass-template").mock(
        side_effect=[httpx.ReadTimeout("read timed out"), httpx.Response(200, json=[])]
    )
    assert client.list_templates() == []
    assert outcomes(records) == [(1, None, "timeout"), (2, 200, "ok")]


def test_connection_errors_exhaust_attempts_as_transient(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    api.get("/api/pass-template").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransientError) as err:
        client.list_templates()
    assert err.value.message == "list_templates: network error (ConnectError)"
    assert err.value.__cause__ is None
    assert [r.outcome for r in records] == ["network_error"] * 3


def test_html_body_on_success_status_is_transient_and_truncated(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    html = "<html><body>" + "Maintenance " * 500 + "</body></html>"
    api.get("/api/pass/p1").mock(
        return_value=httpx.Response(200, text=html, headers={"Content-Type": "text/html"})
    )
    with pytest.raises(TransientError) as err:
        client.get_pass("p1")
    message = err.value.message
    assert message.startswith("get_pass: expected JSON but got text/html (status 200): ")
    assert len(message) < 300
    assert message.count("Maintenance") < 20
    assert [r.outcome for r in records] == ["invalid_body"] * 3


@pytest.mark.parametrize("body", [b"null", b"[]", b""])
def test_success_without_a_pass_object_is_transient(
    api: respx.MockRouter, client: PasscreatorClient, body: bytes
) -> None:
    api.get("/api/pass/p1").mock(return_value=httpx.Response(200, content=body))
    with pytest.raises(TransientError, match="not a pass object"):
        client.get_pass("p1")


def test_create_answer_without_id_is_retried_and_the_guard_reports_already_exists(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    duplicate = error_body(400, [{"property": "userProvidedId", "message": "already exists"}])
    api.post("/api/v3/pass").mock(
        side_effect=[
            httpx.Response(200, json={"success": True, "data": []}),
            httpx.Response(400, json=duplicate),
        ]
    )
    with pytest.raises(AlreadyExistsError):
        client.create_pass(template_id=TEMPLATE, user_provided_id="u", fields={})
    assert outcomes(records) == [(1, 200, "invalid_body"), (2, 400, "already_exists")]


# -- rejections --------------------------------------------------------------------------------


def test_400_duplicate_user_provided_id_is_already_exists_and_not_retried(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    body = error_body(
        400, [{"property": "userProvidedId", "message": "A pass with this ID already exists"}]
    )
    route = api.post("/api/v3/pass").mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(AlreadyExistsError) as err:
        client.create_pass(template_id=TEMPLATE, user_provided_id="u", fields={})
    assert err.value.status == 400
    assert err.value.messages == ["userProvidedId: A pass with this ID already exists"]
    assert route.call_count == 1
    assert outcomes(records) == [(1, 400, "already_exists")]


def test_duplicate_pattern_is_configurable(api: respx.MockRouter) -> None:
    body = error_body(400, ["ID is taken"])
    api.post("/api/v3/pass").mock(return_value=httpx.Response(400, json=body))
    with PasscreatorClient(make_settings()) as default, pytest.raises(RejectedError) as err:
        default.create_pass(template_id=TEMPLATE, user_provided_id="u", fields={})
    assert type(err.value) is RejectedError
    tuned = make_settings(duplicate_pattern=r"(?i)taken")
    with PasscreatorClient(tuned) as pc, pytest.raises(AlreadyExistsError):
        pc.create_pass(template_id=TEMPLATE, user_provided_id="u", fields={})


def test_a_duplicate_worded_400_on_update_is_a_plain_rejection(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    api.patch("/api/v3/pass/p1").mock(
        return_value=httpx.Response(400, json=error_body(400, ["value already used"]))
    )
    with pytest.raises(RejectedError) as err:
        client.update_pass("p1", {"a": 1})
    assert type(err.value) is RejectedError


def test_400_errors_as_objects_become_messages(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    body = error_body(
        400,
        [
            {"property": "name", "message": "The property name is required"},
            {"property": "expiration.expirationDate", "message": "The specified format was wrong"},
        ],
    )
    api.post("/api/v3/pass").mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(RejectedError) as err:
        client.create_pass(template_id=TEMPLATE, user_provided_id="u", fields={})
    assert type(err.value) is RejectedError
    assert err.value.status == 400
    assert err.value.messages == [
        "name: The property name is required",
        "expiration.expirationDate: The specified format was wrong",
    ]


def test_400_errors_as_strings_become_messages(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    body = error_body(400, ["templateId is invalid", "firstName too long"])
    route = api.post("/api/v3/pass").mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(RejectedError) as err:
        client.create_pass(template_id=TEMPLATE, user_provided_id="u", fields={})
    assert err.value.messages == ["templateId is invalid", "firstName too long"]
    assert err.value.message == (
        "create_pass: rejected (400): templateId is invalid; firstName too long"
    )
    assert route.call_count == 1
    assert outcomes(records) == [(1, 400, "rejected")]


def test_envelope_without_errors_falls_back_to_description() -> None:
    assert envelope_messages(error_body(400, [], description="Invalid data.")) == ["Invalid data."]
    assert envelope_messages({"errors": "not a list"}) == []
    assert envelope_messages(None) == []


@pytest.mark.parametrize(
    ("route", "call"),
    [
        (("PATCH", "/api/v3/pass/gone"), lambda pc: pc.update_pass("gone", {"a": 1})),
        (("GET", "/api/pass/gone"), lambda pc: pc.get_pass("gone")),
    ],
)
def test_404_is_not_found(
    api: respx.MockRouter,
    client: PasscreatorClient,
    records: list[CallRecord],
    route: tuple[str, str],
    call: Callable[[PasscreatorClient], object],
) -> None:
    method, path = route
    api.route(method=method, path=path).mock(
        return_value=httpx.Response(404, json=error_body(404, [], description="Pass not found"))
    )
    with pytest.raises(NotFoundError) as err:
        call(client)
    assert err.value.status == 404
    assert err.value.messages == ["Pass not found"]
    assert [r.outcome for r in records] == ["not_found"]


def test_401_is_rejected_without_echoing_the_key(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    route = api.get("/api/pass-template").mock(return_value=httpx.Response(401, text=""))
    with pytest.raises(RejectedError) as err:
        client.list_templates()
    assert type(err.value) is RejectedError
    assert err.value.status == 401
    assert err.value.message == "list_templates: Passcreator refused the API key (401)"
    assert route.call_count == 1
    assert outcomes(records) == [(1, 401, "rejected")]


def test_4xx_html_body_is_rejected_with_a_truncated_snippet(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    html = "<html>" + "x" * 5000 + "</html>"
    api.patch("/api/v3/pass/p1").mock(return_value=httpx.Response(422, text=html))
    with pytest.raises(RejectedError) as err:
        client.update_pass("p1", {"a": 1})
    assert err.value.status == 422
    assert len(err.value.messages) == 1
    assert len(err.value.messages[0]) == 161
    assert err.value.messages[0].endswith("…")


def test_success_status_with_success_false_is_rejected(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    api.patch("/api/v3/pass/p1").mock(
        return_value=httpx.Response(200, json=error_body(200, ["locked"]))
    )
    with pytest.raises(RejectedError) as err:
        client.update_pass("p1", {"a": 1})
    assert err.value.messages == ["locked"]


def test_redirect_is_a_rejection_not_followed(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    api.get("/api/pass-template").mock(
        return_value=httpx.Response(301, headers={"Location": "https://elsewhere.test/"})
    )
    with pytest.raises(RejectedError, match="unexpected redirect"):
        client.list_templates()


# -- secrets and the audit hook ----------------------------------------------------------------


def test_the_key_appears_in_no_error_record_or_log(
    api: respx.MockRouter,
    client: PasscreatorClient,
    records: list[CallRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    api.get("/api/pass-template").mock(
        side_effect=[
            httpx.Response(401),
            httpx.Response(429),
            httpx.ConnectTimeout("timed out"),
            httpx.Response(200, text="<html>"),
            httpx.Response(200, text="<html>"),
            httpx.Response(400, json=error_body(400, ["bad"])),
        ]
    )
    errors: list[ProviderError] = []
    for _ in range(4):
        with pytest.raises(ProviderError) as err:
            client.list_templates()
        errors.append(err.value)
    texts = [repr(e) + str(e) + str(e.__dict__) for e in errors] + [repr(r) for r in records]
    assert [e.status for e in errors] == [401, 429, 200, 400]
    assert isinstance(errors[2], TransientError)
    assert all(KEY not in text for text in texts)
    assert KEY not in caplog.text
    assert KEY not in repr(client.__dict__.get("_settings"))


def test_a_failing_audit_hook_does_not_change_the_outcome(
    api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_record: CallRecord) -> None:
        raise RuntimeError("audit store down")

    api.get("/api/pass-template").mock(return_value=httpx.Response(200, json=[]))
    with PasscreatorClient(make_settings(), on_attempt=broken) as pc:
        assert pc.list_templates() == []
    assert "on_attempt hook failed for list_templates attempt 1" in caplog.text


def test_missing_api_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PASSSYNC_PROVIDERS__<ACCOUNT>__API_KEY"):
        PasscreatorClient(PasscreatorSettings(base_url=BASE))


# -- against the sandbox -----------------------------------------------------------------------


@pytest.fixture
def sandboxed(
    sandbox_server: SandboxHandle, records: list[CallRecord]
) -> Iterator[PasscreatorClient]:
    settings = make_settings(
        base_url=sandbox_server.base_url, api_key=SecretStr(sandbox_server.api_key)
    )
    with PasscreatorClient(settings, on_attempt=records.append) as pc:
        yield pc


LOYALTY = template_id_for("Loyalty Card")


def test_sandbox_templates_have_deterministic_ids(sandboxed: PasscreatorClient) -> None:
    assert sandboxed.list_templates() == [
        ProviderTemplate(template_id=template_id_for("Loyalty Card"), name="Loyalty Card"),
        ProviderTemplate(template_id=template_id_for("Welcome Discount"), name="Welcome Discount"),
        ProviderTemplate(template_id=template_id_for("Event Ticket"), name="Event Ticket"),
    ]


def test_sandbox_create_update_get_round_trip(
    sandboxed: PasscreatorClient, sandbox_server: SandboxHandle
) -> None:
    # given
    created = sandboxed.create_pass(
        template_id=LOYALTY,
        user_provided_id="passsync-42",
        fields={"firstName": "Ada", "points": 1},
    )
    # when
    sandboxed.update_pass(created.pass_id, {"points": 5})
    by_upid = sandboxed.get_pass("passsync-42")
    # then
    assert by_upid.pass_id == created.pass_id
    assert by_upid.user_provided_id == "passsync-42"
    assert by_upid.template_id == LOYALTY
    assert by_upid.voided is False
    assert by_upid.fields == {"firstName": "Ada", "points": 5}
    assert by_upid.download_page == f"{sandbox_server.base_url}/sandbox-pass/{created.pass_id}"
    [stored] = sandbox_server.passes()
    assert sandboxed.get_pass(stored["barcodeValue"]).pass_id == created.pass_id
    assert sandboxed.get_pass(created.pass_id).pass_id == created.pass_id
    assert sandbox_server.stats()["calls"] == {
        "GET /api/pass/{identifier}": 3,
        "PATCH /api/v3/pass/{identifier}": 1,
        "POST /api/v3/pass": 1,
    }


def test_sandbox_duplicate_create_is_already_exists(
    sandboxed: PasscreatorClient, sandbox_server: SandboxHandle
) -> None:
    sandboxed.create_pass(template_id=LOYALTY, user_provided_id="dup", fields={})
    with pytest.raises(AlreadyExistsError):
        sandboxed.create_pass(template_id=LOYALTY, user_provided_id="dup", fields={"points": 1})
    assert [p["userProvidedId"] for p in sandbox_server.passes()] == ["dup"]
    assert sandbox_server.stats()["creates"] == 1


def test_sandbox_unknown_pass_and_template(sandboxed: PasscreatorClient) -> None:
    with pytest.raises(NotFoundError):
        sandboxed.get_pass("nobody")
    with pytest.raises(RejectedError) as err:
        sandboxed.create_pass(template_id="no-such-template", user_provided_id="u", fields={})
    assert err.value.messages == ["templateId: Unknown template"]


def test_sandbox_external_delete_makes_update_not_found(
    sandboxed: PasscreatorClient, sandbox_server: SandboxHandle
) -> None:
    created = sandboxed.create_pass(template_id=LOYALTY, user_provided_id="gone", fields={})
    sandbox_server.delete_externally(created.pass_id)
    with pytest.raises(NotFoundError):
        sandboxed.update_pass(created.pass_id, {"points": 1})
    # and the id is free again for a re-create
    again = sandboxed.create_pass(template_id=LOYALTY, user_provided_id="gone", fields={})
    assert again.pass_id != created.pass_id


def test_sandbox_wrong_key_is_rejected(sandbox_server: SandboxHandle) -> None:
    settings = make_settings(base_url=sandbox_server.base_url, api_key=SecretStr("wrong"))
    with PasscreatorClient(settings) as pc, pytest.raises(RejectedError) as err:
        pc.list_templates()
    assert err.value.status == 401


def test_sandbox_rate_limit_surfaces_retry_after(
    sandboxed: PasscreatorClient, sandbox_server: SandboxHandle, records: list[CallRecord]
) -> None:
    sandbox_server.configure(rate_limit_per_minute=1)
    sandboxed.list_templates()
    with pytest.raises(RateLimitedError) as err:
        sandboxed.list_templates()
    # one token a minute: the next one is (just under) 60 s away, rounded up
    assert err.value.retry_after == 60.0
    assert [r.outcome for r in records] == ["ok", "rate_limited"]
    assert sandbox_server.stats()["rate_limited"] == 1


def test_sandbox_rate_limit_without_header_uses_default(sandbox_server: SandboxHandle) -> None:
    sandbox_server.configure(rate_limit_per_minute=1, send_retry_after=False)
    settings = make_settings(
        base_url=sandbox_server.base_url,
        api_key=SecretStr(sandbox_server.api_key),
        default_retry_after_seconds=4.0,
    )
    with PasscreatorClient(settings) as pc:
        pc.list_templates()
        with pytest.raises(RateLimitedError) as err:
            pc.list_templates()
    assert err.value.retry_after == 4.0


def _seed_for_fault_then_clean(probability: float) -> int:
    """A seed whose first draw injects a fault and whose second does not."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if rng.random() < probability and rng.random() >= probability:
            return seed
    raise AssertionError("no such seed")


def test_sandbox_503_then_success_is_retried(
    sandboxed: PasscreatorClient, sandbox_server: SandboxHandle, records: list[CallRecord]
) -> None:
    sandbox_server.configure(error_503_probability=0.5, seed=_seed_for_fault_then_clean(0.5))
    assert len(sandboxed.list_templates()) == 3
    assert outcomes(records) == [(1, 503, "server_error"), (2, 200, "ok")]
    assert sandbox_server.stats()["faults"]["503"] == 1


def test_sandbox_commit_then_fail_create_ends_in_already_exists_with_one_pass(
    sandboxed: PasscreatorClient, sandbox_server: SandboxHandle, records: list[CallRecord]
) -> None:
    # given every write is applied and then answered with 500
    sandbox_server.configure(commit_then_fail_probability=1.0)
    # when
    with pytest.raises(AlreadyExistsError):
        sandboxed.create_pass(template_id=LOYALTY, user_provided_id="once", fields={"points": 1})
    # then the retry met the uniqueness guard: one pass, which the caller can adopt
    assert outcomes(records) == [(1, 500, "server_error"), (2, 400, "already_exists")]
    assert [p["userProvidedId"] for p in sandbox_server.passes()] == ["once"]
    assert sandboxed.get_pass("once").fields == {"points": 1}


def test_sandbox_non_json_v1_answers_are_transient(
    sandboxed: PasscreatorClient, sandbox_server: SandboxHandle, records: list[CallRecord]
) -> None:
    sandbox_server.configure(non_json_probability=1.0)
    with pytest.raises(TransientError, match="expected JSON but got text/html"):
        sandboxed.get_pass("anything")
    assert [r.outcome for r in records] == ["invalid_body"] * 3
