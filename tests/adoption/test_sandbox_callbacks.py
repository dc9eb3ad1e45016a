"""End to end with the sandbox: subscribe once, the sandbox calls back, the funnel moves."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from tests.adoption.conftest import CALLBACK_TOKEN, READ, seed_mapping
from tests.adoption.live import serving
from tests.api.conftest import BrokerPing, RecordingEnqueue
from worker.adoption.models import PassAdoption
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.providers.passcreator.callbacks import ensure_subscriptions
from worker.providers.passcreator.client import PasscreatorClient
from worker.providers.passcreator.models import WebhookSubscribe
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import PasscreatorSettings, SandboxSettings

KEY = "adoption-sandbox-key"
EVENTS = ["pass_created", "pushnotification_registered", "pushnotification_unregistered"]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(SandboxSettings(port=0, api_key=SecretStr(KEY))) as handle:
        yield handle


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[PasscreatorClient]:
    sandbox.reset()
    settings = PasscreatorSettings(
        base_url=sandbox.base_url, api_key=SecretStr(KEY), max_attempts=1, backoff_seconds=0
    )
    with PasscreatorClient(settings) as passcreator:
        yield passcreator


def subscribe(client: PasscreatorClient, base: str) -> list[str]:
    return ensure_subscriptions(
        lambda: [(h.event, h.target_url) for h in client.list_webhooks()],
        lambda event, url: client.subscribe_webhook(WebhookSubscribe(event=event, target_url=url)),
        f"{base}/providers/passcreator/callbacks",
        CALLBACK_TOKEN,
        EVENTS,
    )


def test_subscribing_twice_makes_no_duplicate_hook(
    client: PasscreatorClient, sandbox: SandboxHandle
) -> None:
    # When passsync subscribes twice
    first = subscribe(client, "http://passsync.test")
    second = subscribe(client, "http://passsync.test")
    # Then each event has one hook
    assert (first, second) == (EVENTS, [])
    assert sorted(h["event"] for h in sandbox.hooks()) == sorted(EVENTS)


def test_sandbox_callbacks_reach_the_ledger_and_the_funnel(
    client: PasscreatorClient, sandbox: SandboxHandle, settings: Settings, db: Database
) -> None:
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing())
    with serving(app) as base, httpx.Client(base_url=base, headers=READ) as api:
        # Given passsync subscribed and a pass created at the provider (and mapped here)
        subscribe(client, base)
        created = client.create_pass(
            template_id=client.list_templates()[0].template_id,
            user_provided_id="passsync-loyalty-cus_1",
            fields={},
        )
        seed_mapping(db, "cus_1", "loyalty", created.pass_id)
        # When a phone saves it, a second phone too, then one removes it
        control = httpx.Client(base_url=sandbox.base_url)
        for action, platform in (("install", "iOS"), ("install", "Android"), ("remove", "iOS")):
            answer = control.post(
                f"/_sandbox/passes/{created.pass_id}/{action}", json={"platform": platform}
            )
            assert answer.json()["sent"] == 1
        funnel = {s["step"]: s["count"] for s in api.get("/api/adoption").json()["steps"]}
    # Then every callback was delivered and recorded, and the pass is installed on one device
    assert [c["status"] for c in control.get("/_sandbox/callbacks").json()["callbacks"]] == [
        202,
        202,
        202,
        202,
    ]
    assert (funnel["downloaded"], funnel["installed"], funnel["removed"]) == (1, 1, 0)
    with db.session() as session:
        state = session.get(PassAdoption, created.pass_id)
        assert state is not None
        assert (state.active_devices, state.installs, state.platform) == (1, 2, "ios")
        assert state.barcode is not None and state.template == "Loyalty Card"
