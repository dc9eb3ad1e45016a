"""Airship's descriptor: registration, credentials, callbacks parsing, the catalog (with its
per-pass install statistics), the actions and the sandbox kit."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from worker.actions.registry import InvalidArgumentsError
from worker.providers import registry
from worker.providers.airship.callbacks import CALLBACK_PATH, event_of, parse_callback
from worker.providers.airship.client import AirshipClient
from worker.providers.airship.kind import KIND, budget_identity
from worker.providers.airship.sandbox.server import SandboxHandle
from worker.providers.airship.settings import AirshipSettings
from worker.providers.errors import AlreadyExistsError
from worker.providers.port import CallbackError, CallbackRequest, iter_pages

LOYALTY = "1000"
PAYLOAD = {
    "passId": 149440311,
    "templateId": 158327,
    "serialNumber": "12345.158327_uuid_149440311",
    "createdAt": "2026-12-04T10:00:00.000Z",
    "updatedAt": "2026-12-04T10:05:00.000Z",
    "externalId": "passsync-loyalty-c1",
    "platform": "android",
}


def test_airship_is_registered_with_one_line() -> None:
    assert registry.get_kind("airship") is KIND
    assert registry.KINDS["airship"] == "worker.providers.airship.kind"
    # No points API at Airship; push is a field's changeMessage
    assert KIND.capabilities == frozenset({"void", "unvoid", "delete", "push"})


def test_credentials_and_budget_identity() -> None:
    assert not KIND.has_credentials(AirshipSettings())
    assert not KIND.has_credentials(AirshipSettings(api_key=SecretStr("k")))
    settings = AirshipSettings(api_key=SecretStr("k"), secret=SecretStr("s"), region="eu")
    assert KIND.has_credentials(settings)
    assert budget_identity(settings) == "https://wallet-api.asnapieu.com/v1|k"
    with pytest.raises(ValueError, match="wpas"):
        AirshipSettings(auth="oauth2", scopes=["wtmp"])


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/v1/pass/install", "installed"), ("/pass/uninstall", "removed")],
)
def test_installs_and_uninstalls_become_facts(path: str, kind: str) -> None:
    raw = json.dumps(PAYLOAD).encode()
    [fact] = parse_callback(CallbackRequest(query={}, headers={}, body=raw, path=path))
    assert (fact.kind, fact.provider_pass_id, fact.platform) == (kind, "149440311", "android")
    assert fact.occurred_at is not None and fact.occurred_at.minute == 5
    assert fact.payload == PAYLOAD
    again = parse_callback(CallbackRequest(query={}, headers={}, body=raw, path=path))
    assert again[0].callback_id == fact.callback_id  # the same delivery: recorded once


def test_paths_and_untracked_events() -> None:
    assert event_of("/v1/pass/149440311/personalize") == "personalize"
    raw = json.dumps(PAYLOAD).encode()
    personalize = CallbackRequest(
        query={}, headers={}, body=raw, path="/v1/pass/149440311/personalize"
    )
    assert parse_callback(personalize) == []
    import re

    for path in ("/v1/pass/install", "/pass/uninstall", "/v1/pass/42/personalize"):
        assert re.fullmatch(CALLBACK_PATH, path)
    for path in ("/v1/pass", "/v2/pass/install", "/v1/pass/install/x"):
        assert not re.fullmatch(CALLBACK_PATH, path)
    with pytest.raises(CallbackError):
        parse_callback(CallbackRequest(query={}, headers={}, body=b"[1]", path="/v1/pass/install"))


def test_the_catalog_pages_every_template_with_install_statistics(
    airship_sandbox: SandboxHandle,
) -> None:
    assert KIND.catalog is not None and KIND.sandbox is not None
    with AirshipClient(airship_sandbox.account(adaptive_links=False)) as client:
        made = [
            client.create_pass(template_id=t, user_provided_id=f"c{i}", fields={})
            for i, t in enumerate([LOYALTY, LOYALTY, LOYALTY, "1001"])
        ]
        client.set_voided(made[1].pass_id, True)
        simulate = KIND.sandbox.simulate_device
        assert simulate is not None
        simulate(airship_sandbox.base_url, made[0].pass_id, "install", "ios")  # no target: no call
        slots: list[int] = []
        catalog = KIND.catalog(client, lambda: slots.append(1))
        listed = list(iter_pages(catalog, 2))
    assert [p.pass_id for p in listed] == [m.pass_id for m in made]
    assert [p.voided for p in listed] == [False, True, False, False]
    assert [p.active_devices for p in listed] == [1, 0, 0, 0]
    assert {p.user_provided_id for p in listed} == {"c0", "c1", "c2", "c3"}
    assert len(slots) >= 4  # every page took a budget slot


def test_the_actions_call_the_client(airship_sandbox: SandboxHandle) -> None:
    assert KIND.actions is not None
    actions = KIND.actions()
    with AirshipClient(airship_sandbox.account(adaptive_links=False)) as client:
        made = actions["create_pass"].run(
            client, {"template_id": LOYALTY, "external_id": "crm-1", "fields": {"tier": "gold"}}
        )
        with pytest.raises(AlreadyExistsError):
            actions["create_pass"].run(client, {"template_id": LOYALTY, "external_id": "crm-1"})
        with pytest.raises(InvalidArgumentsError, match="limit"):
            actions["list_passes"].run(client, {"template_id": LOYALTY, "limit": "3"})
        listed = actions["list_passes"].run(client, {"template_id": LOYALTY, "limit": 5})
        stats = actions["pass_statistics"].run(client, {"external_id": "crm-1"})
        sent = actions["send_message"].run(client, {"pass_id": made.pass_id, "message": "Hi"})
    assert (listed.count, listed.limit_reached) == (1, False)
    assert (stats.total, stats.installed) == (1, 0)
    assert sent.sent is True
    writes = {name for name, a in actions.items() if a.writes}
    assert writes == {
        "create_pass",
        "update_pass",
        "delete_pass",
        "void_pass",
        "unvoid_pass",
        "send_message",
    }


def test_the_sandbox_kit_runs_a_sandbox_that_reports_neutral_state() -> None:
    kit = KIND.sandbox
    assert kit is not None
    settings = kit.settings_model(port=0)
    with kit.running(settings) as running:
        overrides = kit.account_overrides(settings, running.base_url)
        assert overrides == running.account_overrides()
        account = AirshipSettings.model_validate(overrides)
        with AirshipClient(account) as client:
            names = {t.name: t.template_id for t in client.list_templates()}
            assert set(kit.templates) <= set(names)
            client.create_pass(
                template_id=names["Loyalty Card"], user_provided_id="c-1", fields={"points": 3}
            )
        assert kit.attach is not None
        assert kit.attach(running.base_url, settings).state() == running.state()
        (only,) = running.state()
    assert (only.external_id, only.template, only.fields) == ("c-1", "Loyalty Card", {"points": 3})


def test_concurrent_401s_on_one_token_refresh_it_once() -> None:
    """Many threads meet the expired token at once: one new token, no storm."""
    base, token_url = "https://wallet-api.urbanairship.com/v1", "https://oauth2.asnapius.com/token"
    issued: list[str] = []
    lock = threading.Lock()

    def token(_request: httpx.Request) -> httpx.Response:
        with lock:
            issued.append(f"tok-{len(issued) + 1}")
            value = issued[-1]
        return httpx.Response(200, json={"access_token": value, "expires_in": 3600})

    barrier = threading.Barrier(8)

    def get(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer tok-1":
            return httpx.Response(401, json={"code": 401})
        return httpx.Response(200, json={"id": 1})

    settings = AirshipSettings(
        auth="oauth2", api_key=SecretStr("id"), secret=SecretStr("s"), backoff_seconds=0.0
    )
    with respx.mock() as router, AirshipClient(settings) as client:
        router.post(token_url).mock(side_effect=token)
        router.get(f"{base}/pass/1").mock(side_effect=get)
        client.auth.current_token()  # tok-1, about to be refused

        def one() -> Any:
            barrier.wait()
            return client.get_pass("1")

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert issued == ["tok-1", "tok-2"]


def test_passsync_run_sandboxes_an_airship_account_without_credentials(
    make_settings: Any,
) -> None:
    from worker.cli import _sandboxed_accounts

    settings = make_settings(
        providers={
            "passcreator": {"api_key": "k"},
            "wallet": {"kind": "airship"},
            "keyed": {"kind": "airship", "api_key": "k", "secret": "s"},
        }
    )
    assert _sandboxed_accounts(settings) == {"wallet": 8092}
    account = registry.account(settings, "wallet")
    kit = account.kind.sandbox
    assert kit is not None
    pointed = account.pointed_at(kit.account_overrides(account.sandbox_settings, "http://h:1"))
    assert isinstance(pointed, AirshipSettings)
    assert (pointed.api_base(), pointed.token_endpoint()) == ("http://h:1/v1", "http://h:1/token")
    assert pointed.has_credentials() and pointed.project_id == "12345"
