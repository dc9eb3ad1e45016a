"""The Airship sandbox through the real client: both auth schemes, expiring tokens, seeded
faults, inspection and callbacks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from worker.providers import registry
from worker.providers.airship.callbacks import callback_base, parse_callback
from worker.providers.airship.client import AirshipClient
from worker.providers.airship.sandbox.server import SandboxHandle
from worker.providers.errors import AlreadyExistsError, NotFoundError, RejectedError
from worker.providers.port import CallbackRequest

LOYALTY = "1000"  # the sandbox's first template


def quick(sandbox: SandboxHandle, *, oauth: bool = False, **overrides: Any) -> AirshipClient:
    values: dict[str, Any] = {"backoff_seconds": 0.0, "timeout_seconds": 5.0, **overrides}
    settings = sandbox.oauth_account(**values) if oauth else sandbox.account(**values)
    return AirshipClient(settings)


@pytest.mark.parametrize("oauth", [False, True], ids=["basic", "oauth2"])
def test_a_pass_lifecycle_with_either_auth_scheme(
    airship_sandbox: SandboxHandle, oauth: bool
) -> None:
    with quick(airship_sandbox, oauth=oauth) as client:
        templates = {t.name: t.template_id for t in client.list_templates()}
        made = client.create_pass(
            template_id=templates["Loyalty Card"], user_provided_id="ext-1", fields={"tier": "gold"}
        )
        client.update_pass(made.pass_id, {"points": 10})
        client.set_voided(made.pass_id, True)
        client.send_push(made.pass_id, "Hi Ada")
        assert client.get_pass("ext-1").voided is True
        client.set_voided(made.pass_id, False)
    [state] = airship_sandbox.state()
    assert (state.external_id, state.template, state.voided) == ("ext-1", "Loyalty Card", False)
    assert state.fields == {"tier": "gold", "points": 10, "message": "Hi Ada"}
    assert airship_sandbox.passes()[0]["changeMessages"] == ["Hi Ada"]
    stats = airship_sandbox.stats()
    assert stats["creates"] == 1 and stats["auth_refused"] == {}
    assert stats["token_requests"] == (1 if oauth else 0)


def test_a_wrong_project_secret_is_refused(airship_sandbox: SandboxHandle) -> None:
    with quick(airship_sandbox, secret="wrong") as client, pytest.raises(RejectedError) as raised:
        client.list_templates()
    assert raised.value.status == 401
    assert airship_sandbox.stats()["auth_refused"] == {"basic": 1}


def test_a_missing_api_revision_is_refused(airship_sandbox: SandboxHandle) -> None:
    with quick(airship_sandbox, api_revision="1.1") as client, pytest.raises(RejectedError):
        client.list_templates()


def test_an_expired_token_is_refused_and_the_client_refreshes_it_once(
    airship_sandbox: SandboxHandle,
) -> None:
    with quick(airship_sandbox, oauth=True) as client:
        made = client.create_pass(template_id=LOYALTY, user_provided_id="ext-1", fields={})
        # When every token the sandbox issued expires
        assert airship_sandbox.expire_tokens() == 1
        for points in range(5):
            client.update_pass(made.pass_id, {"points": points})
    stats = airship_sandbox.stats()
    # Then one request met the expired token, one new token was requested, and no request
    # carried the old token after that
    assert stats["auth_refused"] == {"expired": 1}
    assert stats["token_requests"] == 2
    assert stats["stale_token_after_refresh"] == 0
    assert airship_sandbox.state()[0].fields == {"points": 4}


def test_a_short_lived_token_is_renewed_before_it_expires(airship_sandbox: SandboxHandle) -> None:
    airship_sandbox.configure(token_lifetime_seconds=0.4)
    with quick(airship_sandbox, oauth=True) as client:
        for _ in range(4):
            client.list_templates()
            threading.Event().wait(0.25)
    stats = airship_sandbox.stats()
    assert stats["auth_refused"] == {}  # renewed before, never after a 401
    assert stats["token_requests"] >= 2


def test_a_token_without_the_scope_is_forbidden(airship_sandbox: SandboxHandle) -> None:
    with quick(airship_sandbox, oauth=True, scopes=["wpas"]) as client:
        with pytest.raises(RejectedError) as raised:
            client.list_templates()  # needs wtmp
        assert raised.value.status == 403
        client.create_pass(template_id=LOYALTY, user_provided_id="ext-1", fields={})


def test_seeded_503s_are_retried(airship_sandbox: SandboxHandle) -> None:
    airship_sandbox.configure(error_503_probability=0.5, seed=3)
    with quick(airship_sandbox, max_attempts=10) as client:
        for n in range(6):
            client.create_pass(template_id=LOYALTY, user_provided_id=f"e{n}", fields={})
    stats = airship_sandbox.stats()
    assert stats["faults"]["503"] > 0
    assert stats["creates"] == 6


def test_commit_then_fail_on_create_is_adopted_not_twinned(
    airship_sandbox: SandboxHandle,
) -> None:
    airship_sandbox.configure(commit_then_fail_probability=1.0)
    with quick(airship_sandbox) as client, pytest.raises(AlreadyExistsError):
        # the first attempt created it (and answered 500); the retry meets the duplicate
        client.create_pass(template_id=LOYALTY, user_provided_id="ext-1", fields={})
    airship_sandbox.configure(commit_then_fail_probability=0.0)
    with quick(airship_sandbox) as client:
        assert client.get_pass("ext-1").user_provided_id == "ext-1"
    assert len(airship_sandbox.state()) == 1


def test_an_unknown_pass_answers_the_documented_404(airship_sandbox: SandboxHandle) -> None:
    with quick(airship_sandbox) as client, pytest.raises(NotFoundError) as raised:
        client.get_pass("nobody")
    assert "Pass not found! Please pass a valid external Id" in raised.value.message


def test_a_deleted_pass_can_be_created_again_under_its_external_id(
    airship_sandbox: SandboxHandle,
) -> None:
    with quick(airship_sandbox) as client:
        made = client.create_pass(template_id=LOYALTY, user_provided_id="ext-1", fields={})
        client.delete_pass(made.pass_id)
        again = client.create_pass(template_id=LOYALTY, user_provided_id="ext-1", fields={})
    assert again.pass_id != made.pass_id


class Receiver:
    """Records what the sandbox calls back with (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.calls.append((self.path, dict(self.headers), body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/providers/air/callbacks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def test_installs_and_removals_call_back_the_registered_target(
    airship_sandbox: SandboxHandle, receiver: Receiver
) -> None:
    kind = registry.get_kind("airship")
    assert kind.subscribe_callbacks is not None and kind.sandbox is not None
    with quick(airship_sandbox) as client:
        made = client.create_pass(template_id=LOYALTY, user_provided_id="ext-1", fields={})
        added = kind.subscribe_callbacks(client, receiver.url, "s3cret", kind.callback_events)
    assert added == ["install", "uninstall"]
    simulate = kind.sandbox.simulate_device
    assert simulate is not None
    assert simulate(airship_sandbox.base_url, made.pass_id, "install", "iOS")
    assert simulate(airship_sandbox.base_url, made.pass_id, "remove", "Android")
    paths = [path for path, _, _ in receiver.calls]
    assert paths == [
        "/providers/air/callbacks/s3cret/v1/pass/install",
        "/providers/air/callbacks/s3cret/v1/pass/uninstall",
    ]
    _, headers, body = receiver.calls[0]
    assert headers["Content-Type"] == "application/json"
    assert body["passId"] == int(made.pass_id) and body["externalId"] == "ext-1"
    assert set(body) == {
        "passId",
        "templateId",
        "serialNumber",
        "createdAt",
        "updatedAt",
        "externalId",
        "platform",
    }
    facts = [
        parse_callback(
            CallbackRequest(
                query={}, headers={}, body=json.dumps(b).encode(), path=path.split("/s3cret")[1]
            )
        )[0]
        for path, _, b in receiver.calls
    ]
    assert [(f.kind, f.provider_pass_id, f.platform) for f in facts] == [
        ("installed", made.pass_id, "ios"),
        ("removed", made.pass_id, "android"),
    ]
    assert callback_base(receiver.url, "s3cret") == f"{receiver.url}/s3cret"


def test_inspection_endpoints(airship_sandbox: SandboxHandle) -> None:
    with quick(airship_sandbox, adaptive_links=True) as client:
        client.list_templates()
        made = client.create_pass(template_id=LOYALTY, user_provided_id="ext-1", fields={"a": 1})
    [link] = airship_sandbox.links()
    assert made.download_page == link["url"]
    assert link["request"]["payload"] == {"externalId": "ext-1", "fields": {"a": {"value": 1}}}
    answer = httpx.get(f"{airship_sandbox.base_url}/_sandbox/config", timeout=5).json()
    assert answer["token_lifetime_seconds"] == 3600


@pytest.mark.parametrize("oauth", [False, True], ids=["basic", "oauth2"])
def test_the_credential_is_described_without_its_secret(
    airship_sandbox: SandboxHandle, oauth: bool
) -> None:
    kind = registry.get_kind("airship")
    with quick(airship_sandbox, oauth=oauth) as client:
        settings = client._settings
        before = kind.describe_credential(settings, client)
        client.list_templates()
        after = kind.describe_credential(settings, client)
    assert before.region == "us"
    if not oauth:
        assert before == after
        assert (after.auth_scheme, after.token_expires_at) == ("basic", None)
        return
    assert before.token_expires_at is None  # no token fetched yet
    assert after.auth_scheme == "oauth2_client_credentials"
    assert after.token_expires_at is not None
    secret = airship_sandbox.client_secret
    assert secret not in repr(after)


def test_with_a_store_path_passes_survive_a_restart(tmp_path: Any) -> None:
    from worker.providers.airship.sandbox.server import running_sandbox
    from worker.providers.airship.settings import AirshipSandboxSettings

    settings = AirshipSandboxSettings(port=0, store_path=tmp_path / "sandbox-air.json")
    with running_sandbox(settings) as first, quick(first) as client:
        made = client.create_pass(template_id=LOYALTY, user_provided_id="ext-1", fields={"a": 1})
    with running_sandbox(settings) as second, quick(second) as client:
        assert client.get_pass("ext-1").pass_id == made.pass_id
        with pytest.raises(AlreadyExistsError):
            client.create_pass(template_id=LOYALTY, user_provided_id="ext-1", fields={})
        other = client.create_pass(template_id=LOYALTY, user_provided_id="ext-2", fields={})
    assert int(other.pass_id) == int(made.pass_id) + 1
    assert oct((tmp_path / "sandbox-air.json").stat().st_mode & 0o777) == "0o600"
