"""End to end with the PassKit sandbox: its PUT callbacks reach the ledger and the funnel."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.adoption.conftest import CALLBACK_TOKEN
from tests.adoption.live import serving
from tests.api.conftest import BrokerPing, RecordingEnqueue
from worker.adoption.models import PassAdoption
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.providers.passkit.client import PassKitClient
from worker.providers.passkit.kind import KIND
from worker.providers.passkit.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passkit.settings import PassKitSandboxSettings
from worker.sync.models import PassMapping, PassStatus


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(PassKitSandboxSettings(host="127.0.0.1", port=0)) as handle:
        yield handle


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        callbacks={"secret": CALLBACK_TOKEN}, providers={"loyalty": {"kind": "passkit"}}
    )


@pytest.mark.parametrize("numeric", [False, True])
def test_passkit_sandbox_callbacks_reach_the_ledger(
    sandbox: SandboxHandle, settings: Settings, db: Database, numeric: bool
) -> None:
    sandbox.reset()
    sandbox.configure(webhook_numeric_enums=numeric)
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing())
    with (
        serving(app) as base,
        PassKitClient(sandbox.account(max_attempts=1, backoff_seconds=0.0)) as client,
    ):
        # Given passsync subscribed the account's callbacks URL and a member it enrolled
        assert KIND.subscribe_callbacks is not None
        KIND.subscribe_callbacks(
            client, f"{base}/providers/loyalty/callbacks", CALLBACK_TOKEN, KIND.callback_events
        )
        template = next(t.template_id for t in client.list_templates() if t.name == "Loyalty Card")
        member = client.create_pass(
            template_id=template, user_provided_id="passsync-loyalty-cus_1", fields={}
        )
        with db.session() as session:
            session.add(
                PassMapping(
                    provider="loyalty",
                    kind="passkit",
                    customer_id="cus_1",
                    pass_key="loyalty",
                    user_provided_id="passsync-loyalty-cus_1",
                    provider_pass_id=member.pass_id,
                    template_id=template,
                    status=PassStatus.ACTIVE,
                )
            )
        # When a phone saves it, a second phone too, then one removes it
        assert KIND.sandbox is not None and KIND.sandbox.simulate_device is not None
        for action, platform in (("install", "IOS"), ("install", "ANDROID"), ("remove", "IOS")):
            assert KIND.sandbox.simulate_device(sandbox.base_url, member.pass_id, action, platform)
        sent = httpx.get(f"{sandbox.base_url}/_sandbox/webhooks").json()["webhooks"]
    # Then PassKit's verbs were used and every delivery was accepted
    tracked = [(w["event"], w["method"], w["status"]) for w in sent]
    assert ("PASS_EVENT_INSTALLED", "PUT", 202) in tracked
    assert [w["status"] for w in sent] == [202] * len(sent)
    assert [w["method"] for w in sent if w["event"] != "PASS_EVENT_RECORD_CREATED"] == ["PUT"] * 3
    with db.session() as session:
        state = session.get(PassAdoption, member.pass_id)
        assert state is not None
        assert (state.active_devices, state.installs, state.removals) == (1, 2, 1)
        assert state.platform == "ios"
