"""Request shapes of every action against the documented examples (respx), and parsing."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from pydantic import SecretStr

from worker.providers.errors import NotFoundError, RejectedError, TransientError
from worker.providers.passcreator.client import CallRecord, PasscreatorClient
from worker.providers.passcreator.models import (
    AppScan,
    PassExistence,
    TemplateCreate,
    WebhookSubscribe,
)
from worker.providers.passcreator.query import PassQuery, decode
from worker.providers.passcreator.settings import PasscreatorSettings

BASE = "https://app.passcreator.test"
KEY = "pc-live-key-51aa"
TEMPLATE = "5b3f2f9f-0000-4000-8000-000000000001"
PASS_ID = "2e6018be-1111-4222-8333-444455556666"


def ok(data: Any, status: int = 200) -> httpx.Response:
    body = {"success": True, "description": "ok", "errors": [], "data": data, "statusCode": status}
    return httpx.Response(status, json=body)


def v1_pass(**overrides: Any) -> dict[str, Any]:
    return {
        "identifier": PASS_ID,
        "userProvidedId": "passsync-loyalty-1",
        "barcodeValue": "BC-1",
        "passTemplateGuid": TEMPLATE,
        "voided": False,
    } | overrides


def list_page(rows: list[dict[str, Any]], next_url: str | None, total: int = 5) -> httpx.Response:
    body: dict[str, Any] = {
        "statusCode": 200,
        "success": True,
        "description": "Success",
        "errors": [],
        "count": len(rows),
        "responseMetaData": {"resultsTotal": total, "resultsThisPage": len(rows)},
        "data": rows,
    }
    if next_url is not None:
        body["page"] = {"next": next_url}
    return httpx.Response(200, json=body)


def settings(**overrides: Any) -> PasscreatorSettings:
    values: dict[str, Any] = {
        "base_url": BASE,
        "api_key": SecretStr(KEY),
        "backoff_seconds": 0.0,
        "page_next_hosts": ["passcreator.test"],
    }
    return PasscreatorSettings(**(values | overrides))


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(records: list[CallRecord]) -> Any:
    with PasscreatorClient(settings(), on_attempt=records.append) as pc:
        yield pc


@pytest.fixture
def api() -> Any:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def sent(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


def params(route: respx.Route, index: int = -1) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(route.calls[index].request.url)).query)


# -- pass existence --------------------------------------------------------------------------


def test_pass_exists_by_user_provided_id_uses_v1_get(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    route = api.get("/api/pass/passsync-loyalty-1").mock(
        return_value=httpx.Response(200, json=v1_pass())
    )
    assert client.pass_exists("passsync-loyalty-1") == PassExistence(
        exists=True,
        identifier="passsync-loyalty-1",
        by="user_provided_id",
        pass_id=PASS_ID,
        user_provided_id="passsync-loyalty-1",
        voided=False,
    )
    assert route.calls.last.request.headers["Authorization"] == KEY
    assert [(r.action, r.path, r.pass_ref) for r in records] == [
        ("pass_exists", "/api/pass/{id}", "passsync-loyalty-1")
    ]


def test_pass_exists_is_false_on_404(api: respx.MockRouter, client: PasscreatorClient) -> None:
    api.get("/api/pass/nobody").mock(return_value=httpx.Response(404, json={"success": False}))
    assert client.pass_exists("nobody", by="barcode").exists is False


def test_pass_exists_rechecks_the_kind_of_identifier(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    # given the lookup matched "BC-1" as a barcode, not as a userProvidedId
    api.get("/api/pass/BC-1").mock(return_value=httpx.Response(200, json=v1_pass()))
    # then
    assert client.pass_exists("BC-1", by="user_provided_id").exists is False
    assert client.pass_exists("BC-1", by="barcode").exists is True
    assert client.pass_exists("BC-1", by="pass_id").exists is False


def test_pass_exists_through_a_v3_query_rechecks_rows(api: respx.MockRouter) -> None:
    # given a server that ignores the filter and returns someone else's pass first
    rows = [
        {"identifier": "other", "userProvidedId": "someone-else"},
        {"identifier": PASS_ID, "userProvidedId": "wanted", "voided": "true"},
    ]
    route = api.get("/api/v3/pass").mock(return_value=list_page(rows, None))
    # when
    with PasscreatorClient(settings(exists_via="v3_query")) as pc:
        found = pc.pass_exists("wanted")
    # then the query was sent, never the ignored ?userProvidedId= parameter
    sent_params = params(route)
    assert "userProvidedId" not in sent_params
    assert decode(sent_params["query"][0]) == {
        "groups": [[{"field": "userProvidedId", "operator": "equals", "value": "wanted"}]]
    }
    assert found.pass_id == PASS_ID
    assert found.voided is True


# -- listing, searching, paging ----------------------------------------------------------------


def test_list_follows_page_next_and_sends_the_template_query(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    # given two pages, the second link on the bare passcreator host like the real API's
    nxt = "https://passcreator.test/api/v3/pass/?pageSize=2&startUid=p3&startCreatedOnTimestamp=17"
    first = api.get("/api/v3/pass").mock(
        return_value=list_page([{"identifier": "p1"}, {"identifier": "p2", "tier": "gold"}], nxt)
    )
    second = api.get(nxt).mock(return_value=list_page([{"identifier": "p3"}], None))
    # when
    rows = client.list_passes(template_id=TEMPLATE, page_size=2)
    # then
    assert [r.pass_id for r in rows] == ["p1", "p2", "p3"]
    assert rows[1].properties == {"tier": "gold"}
    sent_params = params(first)
    assert sent_params["pageSize"] == ["2"]
    assert sent_params["formatKeyAdditionalProperties"] == ["name"]
    assert decode(sent_params["query"][0]) == {"templateId": TEMPLATE}
    assert second.calls.last.request.headers["Authorization"] == KEY
    assert [(r.action, r.status) for r in records] == [("list_passes", 200)] * 2


def test_limit_stops_before_fetching_more_pages(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    nxt = f"{BASE}/api/v3/pass/?startUid=p3"
    api.get("/api/v3/pass").mock(
        return_value=list_page([{"identifier": "p1"}, {"identifier": "p2"}], nxt)
    )
    follow = api.get(nxt).mock(return_value=list_page([{"identifier": "p3"}], None))
    assert [r.pass_id for r in client.list_passes(limit=2)] == ["p1", "p2"]
    assert follow.call_count == 0


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.test/api/v3/pass/?startUid=x",
        "http://passcreator.test/api/v3/pass/?startUid=x",
        "https://app.passcreator.test.evil.test/api/v3/pass/",
    ],
)
def test_page_next_to_another_host_is_refused_without_a_request(
    api: respx.MockRouter, client: PasscreatorClient, link: str
) -> None:
    api.get("/api/v3/pass").mock(return_value=list_page([{"identifier": "p1"}], link))
    elsewhere = api.route(host__regex=r"evil|^passcreator\.test$").mock(
        return_value=list_page([], None)
    )
    with pytest.raises(RejectedError, match=r"refusing page\.next"):
        client.list_passes()
    assert elsewhere.call_count == 0


def test_a_page_next_loop_is_refused(api: respx.MockRouter, client: PasscreatorClient) -> None:
    loop = f"{BASE}/api/v3/pass/?startUid=p1"
    api.get("/api/v3/pass").mock(return_value=list_page([{"identifier": "p1"}], loop))
    api.get("/api/v3/pass/").mock(return_value=list_page([{"identifier": "p1"}], loop))
    with pytest.raises(RejectedError, match="repeats a page"):
        client.list_passes()


def test_search_sends_the_search_phrase(api: respx.MockRouter, client: PasscreatorClient) -> None:
    route = api.get("/api/v3/pass").mock(return_value=list_page([], None))
    assert client.search_passes("Lovelace", template_id=TEMPLATE) == []
    assert decode(params(route)["query"][0]) == {"templateId": TEMPLATE, "searchPhrase": "Lovelace"}


def test_empty_search_phrase_is_refused_without_a_request(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    route = api.get("/api/v3/pass").mock(return_value=list_page([], None))
    with pytest.raises(RejectedError, match="search phrase is empty"):
        client.search_passes("  ")
    assert route.call_count == 0


def test_query_results_are_rechecked_for_pinned_ids_and_template(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    rows = [
        {"identifier": "a", "userProvidedId": "u1", "passTemplateGuid": TEMPLATE},
        {"identifier": "b", "userProvidedId": "u9", "passTemplateGuid": TEMPLATE},
        {"identifier": "c", "userProvidedId": "u2", "passTemplateGuid": "other"},
        {"identifier": "d", "userProvidedId": "u2"},
    ]
    route = api.get("/api/v3/pass").mock(return_value=list_page(rows, None))
    query = PassQuery(template_id=TEMPLATE).where("userProvidedId", "equals", ["u1", "u2"])
    assert [r.pass_id for r in client.query_passes(query)] == ["a", "d"]
    assert decode(params(route)["query"][0]) == query.to_dict()


def test_a_list_answer_that_is_not_an_envelope_is_transient(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    api.get("/api/v3/pass").mock(return_value=httpx.Response(200, json=[{"identifier": "x"}]))
    with pytest.raises(TransientError, match="not a v3 list envelope"):
        client.list_passes()


# -- update, delete ------------------------------------------------------------------------------


def test_update_with_replace_posts_the_full_record(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    route = api.post(f"/api/v3/pass/{PASS_ID}").mock(return_value=ok({"identifier": PASS_ID}))
    result = client.update_pass(PASS_ID, {"tier": "gold"}, replace=True)
    assert sent(route) == {"data": {"tier": "gold"}}
    assert result.fields == {"tier": "gold"}
    assert [(r.action, r.method, r.pass_ref) for r in records] == [("update_pass", "POST", PASS_ID)]


def test_delete_sends_v3_delete(api: respx.MockRouter, client: PasscreatorClient) -> None:
    route = api.delete(f"/api/v3/pass/{PASS_ID}").mock(return_value=ok([]))
    assert client.delete_pass(PASS_ID) is None
    assert route.call_count == 1


def test_delete_404_after_an_unanswered_attempt_is_success(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    # given the first delete was applied but its answer lost
    api.delete(f"/api/v3/pass/{PASS_ID}").mock(
        side_effect=[httpx.ReadTimeout("lost"), httpx.Response(404, json={"success": False})]
    )
    # when / then
    assert client.delete_pass(PASS_ID) is None
    assert [r.outcome for r in records] == ["timeout", "not_found"]


def test_delete_404_on_the_first_attempt_is_not_found_unless_missing_ok(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    api.delete(f"/api/v3/pass/{PASS_ID}").mock(return_value=httpx.Response(404))
    with pytest.raises(NotFoundError):
        client.delete_pass(PASS_ID)
    assert client.delete_pass(PASS_ID, missing_ok=True) is None


# -- non-idempotent calls ----------------------------------------------------------------------


def test_push_is_not_repeated_after_a_503(api: respx.MockRouter, client: PasscreatorClient) -> None:
    route = api.post(f"/api/pass/{PASS_ID}/sendpushnotification").mock(
        return_value=httpx.Response(503)
    )
    with pytest.raises(TransientError):
        client.send_push(PASS_ID, "Hi {Firstname}")
    assert route.call_count == 1
    assert sent(route) == {"pushNotificationText": "Hi {Firstname}"}


def test_push_is_repeated_when_the_connection_never_carried_it(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    route = api.post(f"/api/pass/{PASS_ID}/sendpushnotification").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(204)]
    )
    client.send_push(PASS_ID, "Hi")
    assert route.call_count == 2
    assert [r.outcome for r in records] == ["network_error", "ok"]


def test_unguarded_create_is_not_repeated_after_a_timeout(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    route = api.post("/api/v3/pass").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError, match="timed out"):
        client.create_pass(template_id=TEMPLATE, user_provided_id=None, fields={"a": 1})
    assert route.call_count == 1
    assert sent(route) == {"data": {"templateId": TEMPLATE, "a": 1}}


def test_create_with_barcode_grouping_and_no_guard(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    route = api.post("/api/v3/pass").mock(
        return_value=ok({"identifier": PASS_ID, "barcodeValue": "B-7", "serialNumber": "S"})
    )
    created = client.create_pass(
        template_id=TEMPLATE,
        user_provided_id="u",
        fields={"seat": "12A"},
        barcode_value="B-7",
        grouping_identifier="G-1",
        enforce_unique=False,
    )
    assert sent(route) == {
        "data": {
            "templateId": TEMPLATE,
            "userProvidedId": "u",
            "barcodeValue": "B-7",
            "groupingIdentifier": "G-1",
            "seat": "12A",
        }
    }
    assert (created.barcode_value, created.serial_number) == ("B-7", "S")


# -- templates -----------------------------------------------------------------------------------


def test_get_template_uses_v2_describe_and_reads_the_v1_shape(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    body = {
        "identifier": TEMPLATE,
        "name": "Loyalty Card",
        "numberOfCreatedPasses": "12",
        "dynamicFields": {"additionalProperties": {"tier": "5b3f.1"}},
        "locations": [],
    }
    route = api.get(f"/api/v2/pass-template/{TEMPLATE}/describe").mock(return_value=ok(body))
    details = client.get_template(TEMPLATE)
    assert route.call_count == 1
    assert details.template_id == TEMPLATE
    assert details.number_of_created_passes == 12
    assert details.additional_properties == {"tier": "5b3f.1"}
    assert details.model_extra == {"locations": []}
    assert records[0].pass_ref is None


def test_template_paths_are_configurable(api: respx.MockRouter) -> None:
    route = api.get(f"/api/pass-template/{TEMPLATE}").mock(
        return_value=httpx.Response(200, json={"identifier": TEMPLATE, "name": "L"})
    )
    with PasscreatorClient(settings(paths={"get_template": "/api/pass-template/{id}"})) as pc:
        assert pc.get_template(TEMPLATE).name == "L"
    assert route.call_count == 1


def test_create_template_posts_v2_and_is_not_repeated(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    route = api.post("/api/v2/pass-template").mock(
        side_effect=[httpx.Response(500), ok({"identifier": "t-new"})]
    )
    with pytest.raises(TransientError):
        client.create_template(TemplateCreate(name="Promo", type="coupon", description="d"))
    assert route.call_count == 1
    assert sent(route) == {"name": "Promo", "type": "coupon", "description": "d"}


def test_update_template_patches_then_publishes(
    api: respx.MockRouter, client: PasscreatorClient, records: list[CallRecord]
) -> None:
    patch = api.patch(f"/api/v2/pass-template/{TEMPLATE}").mock(return_value=ok({}))
    publish = api.post(f"/api/v2/pass-template/{TEMPLATE}/publish").mock(return_value=ok({}))
    result = client.update_template(TEMPLATE, {"description": "new"}, publish=True)
    assert sent(patch) == {"description": "new"}
    assert publish.call_count == 1
    assert result.template_id is None
    assert [r.action for r in records] == ["update_template", "publish_template"]


def test_update_template_replace_posts(api: respx.MockRouter, client: PasscreatorClient) -> None:
    route = api.post(f"/api/v2/pass-template/{TEMPLATE}").mock(
        return_value=ok({"identifier": TEMPLATE})
    )
    assert client.update_template(TEMPLATE, {"name": "X"}, replace=True).template_id == TEMPLATE
    assert route.call_count == 1


def test_delete_template(api: respx.MockRouter, client: PasscreatorClient) -> None:
    route = api.delete(f"/api/pass-template/{TEMPLATE}").mock(return_value=httpx.Response(204))
    assert client.delete_template(TEMPLATE) is None
    assert route.call_count == 1


def test_statistics_counts_given_as_strings_are_numbers(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    body = {
        "activeRegistrationsTimeline": [{"date": "2024-05-01", "noOfPasses": "268"}],
        "passesPerOperatingSystem": {"iOS": "3", "Android": "4", "WindowsPhone": "0"},
    }
    route = api.get(f"/api/pass/statistics/{TEMPLATE}").mock(
        return_value=httpx.Response(200, json=body)
    )
    stats = client.template_statistics(TEMPLATE, time_frame="week", day="2024-05-01")
    assert params(route) == {"timeFrame": ["week"], "day": ["2024-05-01"]}
    assert [(p.date, p.passes) for p in stats.active_registrations] == [("2024-05-01", 268)]
    assert stats.passes_per_operating_system == {"iOS": 3, "Android": 4, "WindowsPhone": 0}
    assert stats.created_passes == []


# -- webhooks and scans --------------------------------------------------------------------------


def test_subscribe_webhook_for_a_template_and_list(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    subscribe = api.post(f"/api/hook/subscribe/{TEMPLATE}").mock(
        return_value=httpx.Response(
            201, json={"id": "h1", "event": "pass_created", "accessToken": "tok-secret"}
        )
    )
    listing = api.get("/api/hook/list").mock(
        return_value=httpx.Response(200, json=[{"id": "h1", "target_url": "https://x/h"}])
    )
    hook = client.subscribe_webhook(
        WebhookSubscribe(target_url="https://x/h", event="pass_created", sign_payload=True),
        template_id=TEMPLATE,
    )
    assert sent(subscribe) == {
        "target_url": "https://x/h",
        "event": "pass_created",
        "signPayload": True,
    }
    assert hook.subscription_id == "h1"
    assert hook.access_token is not None
    assert "tok-secret" not in repr(hook)
    assert [h.target_url for h in client.list_webhooks()] == ["https://x/h"]
    assert listing.call_count == 1


def test_record_app_scan_body_and_answer(api: respx.MockRouter, client: PasscreatorClient) -> None:
    route = api.post("/api/appscan").mock(
        return_value=httpx.Response(200, json={"appScanId": "scan-1"})
    )
    scan = AppScan(
        app_configuration_id="cfg-1",
        pass_id=PASS_ID,
        scan_status=0,
        device_name="Gate 1",
        created_on="2017-05-17 08:00:00",
        set_voided=True,
    )
    assert client.record_app_scan(scan).app_scan_id == "scan-1"
    assert sent(route) == {
        "appConfigurationId": "cfg-1",
        "passId": PASS_ID,
        "scanStatus": 0,
        "deviceName": "Gate 1",
        "createdOn": "2017-05-17 08:00:00",
        "setVoided": True,
    }


def test_an_answer_of_the_wrong_shape_is_a_clear_transient_error(
    api: respx.MockRouter, client: PasscreatorClient
) -> None:
    api.post("/api/appscan").mock(return_value=httpx.Response(200, json={"unexpected": 1}))
    with pytest.raises(TransientError, match="does not match AppScanResult"):
        client.record_app_scan(AppScan(app_configuration_id="c"))
