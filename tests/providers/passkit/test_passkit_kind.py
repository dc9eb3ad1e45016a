"""The PassKit descriptor: registration, callbacks, reconciliation catalog, actions, sandbox kit."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.providers.passkit.conftest import Receiver
from worker.actions.registry import InvalidArgumentsError
from worker.providers import registry
from worker.providers.errors import AlreadyExistsError
from worker.providers.passkit.callbacks import callback_url, event_name, parse_callback
from worker.providers.passkit.client import PassKitClient
from worker.providers.passkit.kind import KIND, budget_identity
from worker.providers.passkit.sandbox.server import SandboxHandle
from worker.providers.passkit.sandbox.store import program_id_for
from worker.providers.passkit.settings import PassKitSettings
from worker.providers.port import CallbackError, CallbackRequest, iter_pages

LOYALTY = program_id_for("Loyalty Card")
BASE_TIER = f"{LOYALTY}/base"


def request(body: Any, **query: str) -> CallbackRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return CallbackRequest(query=query, headers={}, body=raw)


def test_passkit_is_registered_with_one_line() -> None:
    assert registry.get_kind("passkit") is KIND
    assert KIND.title == "PassKit"
    assert KIND.settings_model is PassKitSettings
    assert KIND.sandbox is not None


def test_credentials_and_budget_identity() -> None:
    assert KIND.has_credentials(PassKitSettings()) is False
    with_jwt = PassKitSettings(api_key=SecretStr("k"), secret=SecretStr("s"))
    assert KIND.has_credentials(with_jwt) is True
    token = PassKitSettings(auth="long_lived_token", api_key=SecretStr("t"))
    assert KIND.has_credentials(token) is True
    assert budget_identity(with_jwt) == "https://api.pub1.passkit.io|k"
    pub2 = PassKitSettings(region="pub2", api_key=SecretStr("k"), secret=SecretStr("s"))
    assert budget_identity(pub2) != budget_identity(with_jwt)


# -- callbacks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("PASS_EVENT_INSTALLED", "installed"),
        (2, "installed"),
        ("8", "removed"),
        ("PASS_EVENT_UNINSTALLED", "removed"),
        ("PASS_EVENT_RECORD_CREATED", "created"),
        (16, "voided"),
    ],
)
def test_tracked_events_become_facts(event: Any, kind: str) -> None:
    body = {
        "event": event,
        "pass": {
            "id": "20tDNDWjawWwnqygGvFhL1",
            "classId": LOYALTY,
            "protocol": 100,
            "metaData": {
                "status": 2,
                "platform": "IOS",
                "lastInstalledAt": {"seconds": 1780000000},
            },
        },
    }
    (fact,) = parse_callback(request(body))
    assert fact.kind == kind
    assert fact.provider_pass_id == "20tDNDWjawWwnqygGvFhL1"
    assert fact.platform == "ios"
    assert fact.occurred_at is not None and int(fact.occurred_at.timestamp()) == 1780000000
    assert fact.callback_id.startswith("sha256:")
    assert fact.payload == body


@pytest.mark.parametrize("event", ["PASS_EVENT_RECORD_UPDATED", 32, "SOMETHING_ELSE", None])
def test_untracked_events_give_no_fact(event: Any) -> None:
    assert parse_callback(request({"event": event, "pass": {"id": "x"}})) == []


def test_the_member_id_may_come_from_record_data_and_time_from_a_string() -> None:
    body = {
        "event": "PASS_EVENT_INSTALLED",
        "pass": {
            "recordData": {"members.member.id": "m-1"},
            "metadata": {"platform": "ANDROID", "lastInstalledAt": "2026-06-01T10:00:00Z"},
        },
    }
    (fact,) = parse_callback(request(body))
    assert (fact.provider_pass_id, fact.platform) == ("m-1", "android")
    assert fact.occurred_at is not None and fact.occurred_at.hour == 10


def test_the_same_delivery_twice_has_the_same_id() -> None:
    body = {"event": 2, "pass": {"id": "m"}}
    first, again = parse_callback(request(body)), parse_callback(request(body))
    other = parse_callback(request({"event": 8, "pass": {"id": "m"}}))
    assert first[0].callback_id == again[0].callback_id
    assert first[0].callback_id != other[0].callback_id


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]"])
def test_an_unreadable_body_is_a_callback_error(raw: bytes) -> None:
    with pytest.raises(CallbackError):
        parse_callback(request(raw))


def test_event_names() -> None:
    assert event_name(1) == "PASS_EVENT_RECORD_CREATED"
    assert event_name("pass_event_installed") == "PASS_EVENT_INSTALLED"
    assert event_name(64) is None
    assert event_name(True) is None


def test_subscribing_is_idempotent_per_program(
    passkit_sandbox: SandboxHandle, receiver: Receiver
) -> None:
    assert KIND.subscribe_callbacks is not None
    url = receiver.url.split("?")[0]
    with PassKitClient(passkit_sandbox.account()) as client:
        first = KIND.subscribe_callbacks(client, url, "tok", KIND.callback_events)
        again = KIND.subscribe_callbacks(client, url, "tok", KIND.callback_events)
        created = client.create_pass(template_id=BASE_TIER, user_provided_id="crm-1", fields={})
    sinks = httpx.get(f"{passkit_sandbox.base_url}/_sandbox/sinks").json()["sinks"]

    assert first == list(KIND.callback_events)
    assert again == []
    assert len(sinks) == 3  # one per program
    assert {json.loads(s["configuration"])["targetUrl"] for s in sinks} == {
        callback_url(url, "tok")
    }
    assert KIND.sandbox is not None and KIND.sandbox.simulate_device is not None
    assert KIND.sandbox.simulate_device(passkit_sandbox.base_url, created.pass_id, "install", "IOS")
    methods = [(m, b["event"]) for m, _p, b in receiver.calls]
    assert methods == [("POST", "PASS_EVENT_RECORD_CREATED"), ("PUT", "PASS_EVENT_INSTALLED")]
    facts = [parse_callback(request(b)) for _m, _p, b in receiver.calls]
    assert [f[0].kind for f in facts] == ["created", "installed"]
    assert {f[0].provider_pass_id for f in facts} == {created.pass_id}


# -- reconciliation ------------------------------------------------------------------------


def test_the_catalog_pages_through_every_program(passkit_sandbox: SandboxHandle) -> None:
    assert KIND.catalog is not None
    slots: list[int] = []
    with PassKitClient(passkit_sandbox.account()) as client:
        for n in range(5):
            client.create_pass(template_id=BASE_TIER, user_provided_id=f"l-{n}", fields={})
        welcome = f"{program_id_for('Welcome Discount')}/base"
        voided = client.create_pass(template_id=welcome, user_provided_id="w-0", fields={})
        client.set_voided(voided.pass_id, True)
        catalog = KIND.catalog(client, lambda: slots.append(1))
        rows = list(iter_pages(catalog, 2))

    assert [r.user_provided_id for r in rows] == ["l-0", "l-1", "l-2", "l-3", "l-4", "w-0"]
    assert [r.voided for r in rows] == [False] * 5 + [True]
    assert rows[0].template_id == BASE_TIER
    assert len(slots) >= 4


def test_an_empty_account_is_one_empty_page(passkit_sandbox: SandboxHandle) -> None:
    assert KIND.catalog is not None
    with PassKitClient(passkit_sandbox.account()) as client:
        page = KIND.catalog(client, None).page(None, 10)
    assert (page.passes, page.next_cursor) == ([], None)


# -- actions -------------------------------------------------------------------------------


def test_the_actions_call_the_client(passkit_sandbox: SandboxHandle) -> None:
    assert KIND.actions is not None
    actions = KIND.actions()
    with PassKitClient(passkit_sandbox.account()) as client:
        enrolled = actions["enrol_member"].run(
            client, {"template_id": BASE_TIER, "external_id": "crm-1", "fields": {"points": 5}}
        )
        earned = actions["earn_points"].run(client, {"member_id": enrolled.pass_id, "points": 10})
        listed = actions["list_members"].run(client, {"program_id": LOYALTY, "limit": 1})
        with pytest.raises(AlreadyExistsError):
            actions["enrol_member"].run(client, {"template_id": BASE_TIER, "external_id": "crm-1"})
        with pytest.raises(InvalidArgumentsError, match="points"):
            actions["burn_points"].run(client, {"member_id": enrolled.pass_id, "points": "3"})

    assert earned.points == 15
    assert (listed.count, listed.limit_reached) == (1, True)
    writes = {name for name, a in actions.items() if a.writes}
    assert writes == {
        "enrol_member",
        "update_member",
        "delete_member",
        "earn_points",
        "burn_points",
        "set_points",
        "void_member",
        "unvoid_member",
        "send_message",
    }


# -- sandbox kit ---------------------------------------------------------------------------


def test_the_sandbox_kit_runs_a_sandbox_that_reports_neutral_state() -> None:
    kit = KIND.sandbox
    assert kit is not None
    settings = kit.settings_model(port=0)
    with kit.running(settings) as running:
        overrides = kit.account_overrides(settings, running.base_url)
        assert overrides == running.account_overrides()
        account = PassKitSettings.model_validate(overrides)
        with PassKitClient(account) as client:
            names = {t.name: t.template_id for t in client.list_templates()}
            assert set(kit.templates) <= set(names)
            client.create_pass(
                template_id=names["Loyalty Card"],
                user_provided_id="c-1",
                fields={"firstName": "Ada", "points": 3},
            )
        assert kit.attach is not None
        assert kit.attach(running.base_url, settings).state() == running.state()
        running.configure(commit_then_fail_probability=0.5, error_503_probability=0.1, seed=1)
        (only,) = running.state()
        stats = running.stats()
    assert (only.external_id, only.template, only.fields) == (
        "c-1",
        "Loyalty Card",
        {"firstName": "Ada", "points": 3},
    )
    assert stats["creates"] == 1
    assert set(stats["faults"]) >= {"500", "503", "commit_then_fail"}
