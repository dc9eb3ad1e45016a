"""Contract suite: the Airship pass calls through the client, against the sandbox and live.

Always runs against the sandbox. Runs against the real Airship Wallet API only when
AIRSHIP_API_KEY, AIRSHIP_SECRET and AIRSHIP_TEMPLATE_ID are set and CI is not (reported as
skipped otherwise). AIRSHIP_AUTH (basic or oauth2, default basic), AIRSHIP_REGION (us or eu,
default us) are optional. Use a test project: live runs create passes under a unique external
id prefix and delete them afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pydantic import SecretStr

from tests.providers.live import TARGETS, live_env, needs_sandbox
from worker.providers.airship.client import AirshipClient
from worker.providers.airship.sandbox.server import SandboxHandle
from worker.providers.airship.settings import AirshipSettings
from worker.providers.common.http import CallRecord
from worker.providers.errors import AlreadyExistsError, NotFoundError


@dataclass
class Target:
    client: AirshipClient
    template_id: str
    prefix: str
    records: list[CallRecord]
    sandbox: SandboxHandle | None = None
    created: list[str] = field(default_factory=list)

    def external(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def create(self, name: str, **fields: object) -> str:
        made = self.client.create_pass(
            template_id=self.template_id, user_provided_id=self.external(name), fields=dict(fields)
        )
        self.created.append(made.pass_id)
        return made.pass_id


def _live_settings() -> tuple[AirshipSettings, str]:
    env = live_env("Airship", ("AIRSHIP_API_KEY", "AIRSHIP_SECRET", "AIRSHIP_TEMPLATE_ID"))
    settings = AirshipSettings(
        auth=os.environ.get("AIRSHIP_AUTH", "basic"),  # type: ignore[arg-type]
        region=os.environ.get("AIRSHIP_REGION", "us"),  # type: ignore[arg-type]
        api_key=SecretStr(env["AIRSHIP_API_KEY"]),
        secret=SecretStr(env["AIRSHIP_SECRET"]),
        adaptive_links=False,
    )
    return settings, env["AIRSHIP_TEMPLATE_ID"]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    records: list[CallRecord] = []
    prefix = f"passsync-contract-{uuid.uuid4().hex[:10]}"
    sandbox: SandboxHandle | None = None
    if request.param == "sandbox":
        sandbox = request.getfixturevalue("airship_sandbox")
        settings = sandbox.account(backoff_seconds=0.0, timeout_seconds=2.0, adaptive_links=False)
        template = "1000"
    else:
        settings, template = _live_settings()
    with AirshipClient(settings, on_attempt=records.append) as client:
        found = Target(client, template, prefix, records, sandbox)
        yield found
        for pass_id in found.created:
            client.delete_pass(pass_id, missing_ok=True)


def test_create_get_update_void_unvoid(target: Target) -> None:
    pass_id = target.create("a", tier="gold")
    external = target.external("a")
    assert target.client.get_pass(external).pass_id == pass_id
    target.client.update_pass(pass_id, {"tier": "silver"})
    assert target.client.get_pass(pass_id).fields.get("tier") == "silver"
    assert target.client.set_voided(pass_id, True).voided
    assert target.client.get_pass(pass_id).voided is True
    target.client.set_voided(pass_id, False)
    assert target.client.get_pass(pass_id).voided is False


def test_a_second_create_under_the_external_id_is_already_exists(target: Target) -> None:
    target.create("dup")
    with pytest.raises(AlreadyExistsError):
        target.create("dup")


def test_an_unknown_external_id_is_not_found(target: Target) -> None:
    with pytest.raises(NotFoundError):
        target.client.get_pass(target.external("nobody"))


def test_the_template_is_listed_and_its_passes_too(target: Target) -> None:
    pass_id = target.create("listed")
    assert target.template_id in {t.template_id for t in target.client.list_templates()}
    ids = {str(row["id"]) for row in target.client.iter_passes(target.template_id)}
    assert pass_id in ids


def test_delete_then_get_is_not_found(target: Target) -> None:
    pass_id = target.create("deleted")
    target.client.delete_pass(pass_id)
    with pytest.raises(NotFoundError):
        target.client.get_pass(pass_id)


def test_every_call_carries_the_api_revision(target: Target) -> None:
    needs_sandbox(target.sandbox)
    target.create("revision")
    assert target.sandbox is not None
    assert target.sandbox.stats()["calls"]["POST /v1/pass/{template_id}/id/{external_id}"] == 1
    assert [r.action for r in target.records] == ["create"]
