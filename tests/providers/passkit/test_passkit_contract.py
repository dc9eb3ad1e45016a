"""Contract suite: the PassKit member calls through the client, against the sandbox and live.

Always runs against the sandbox. Runs against the real PassKit API only when
PASSKIT_API_KEY + PASSKIT_API_SECRET (or PASSKIT_LONG_LIVED_TOKEN) and PASSKIT_PROGRAM_ID are
set and CI is not (reported as skipped otherwise). PASSKIT_TIER_ID (default "base") and
PASSKIT_REGION (pub1 or pub2, default pub1) are optional. Use a Draft program: live runs enrol
members under a unique externalId prefix and delete them afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pydantic import SecretStr

from tests.conftest import services_required
from worker.providers.errors import AlreadyExistsError, NotFoundError
from worker.providers.passkit.client import CallRecord, PassKitClient
from worker.providers.passkit.sandbox.server import SandboxHandle
from worker.providers.passkit.sandbox.store import program_id_for
from worker.providers.passkit.settings import PassKitSettings


@dataclass
class Target:
    client: PassKitClient
    template_id: str
    prefix: str
    records: list[CallRecord]
    sandbox: SandboxHandle | None = None
    created: list[str] = field(default_factory=list)

    def external(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def enrol(self, name: str, **fields: object) -> str:
        made = self.client.create_pass(
            template_id=self.template_id, user_provided_id=self.external(name), fields=dict(fields)
        )
        self.created.append(made.pass_id)
        return made.pass_id


def _live_settings() -> tuple[PassKitSettings, str]:
    if services_required():
        pytest.skip("live PassKit contract tests never run in CI")
    key, secret = os.environ.get("PASSKIT_API_KEY"), os.environ.get("PASSKIT_API_SECRET")
    token = os.environ.get("PASSKIT_LONG_LIVED_TOKEN")
    program = os.environ.get("PASSKIT_PROGRAM_ID")
    if not program or not (token or (key and secret)):
        pytest.skip(
            "PASSKIT_API_KEY + PASSKIT_API_SECRET (or PASSKIT_LONG_LIVED_TOKEN) and "
            "PASSKIT_PROGRAM_ID not set: live PassKit tests skipped"
        )
    region = os.environ.get("PASSKIT_REGION", "pub1")
    values: dict[str, object] = {"region": region}
    if token:
        values |= {"auth": "long_lived_token", "api_key": SecretStr(token)}
    else:
        values |= {"api_key": SecretStr(key or ""), "secret": SecretStr(secret or "")}
    settings = PassKitSettings.model_validate(values)
    return settings, f"{program}/{os.environ.get('PASSKIT_TIER_ID', 'base')}"


@pytest.fixture(params=["sandbox", "live"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    records: list[CallRecord] = []
    prefix = f"passsync-contract-{uuid.uuid4().hex[:10]}"
    sandbox: SandboxHandle | None = None
    if request.param == "sandbox":
        sandbox = request.getfixturevalue("passkit_sandbox")
        settings = sandbox.account(backoff_seconds=0.0, timeout_seconds=2.0)
        template = f"{program_id_for('Loyalty Card')}/base"
    else:
        settings, template = _live_settings()
    with PassKitClient(settings, on_attempt=records.append) as client:
        found = Target(client, template, prefix, records, sandbox)
        yield found
        for member_id in found.created:
            client.delete_pass(member_id, missing_ok=True)


def test_the_template_is_listed(target: Target) -> None:
    assert target.template_id in {t.template_id for t in target.client.list_templates()}


def test_enrol_get_update_points_void_delete(target: Target) -> None:
    pk = target.client
    member_id = target.enrol("life", forename="Ada", points=5, segment="vip")
    external = target.external("life")

    found = pk.get_pass(member_id)
    assert (found.pass_id, found.user_provided_id) == (member_id, external)
    assert found.template_id == target.template_id
    assert found.fields["forename"] == "Ada"
    assert found.fields["segment"] == "vip"
    assert pk.get_pass(external, template_id=target.template_id).pass_id == member_id

    # a second enrol with the same externalId is refused: no twin
    with pytest.raises(AlreadyExistsError):
        pk.create_pass(template_id=target.template_id, user_provided_id=external, fields={})

    # zero points through points/set; an empty metaData value through a full-record PUT
    pk.update_pass(member_id, {"points": 0, "segment": "", "surname": "Lovelace"})
    raw = pk.get_member(member_id)
    assert raw.get("points", 0) == 0
    assert raw.get("metaData", {}).get("segment", "") == ""
    assert raw["person"]["surname"] == "Lovelace"

    assert pk.earn_points(member_id, 10).points == 10
    assert pk.burn_points(member_id, 4).points == 6

    pk.set_voided(member_id, True)
    assert pk.get_pass(member_id).voided is True
    pk.set_voided(member_id, False)
    assert pk.get_pass(member_id).voided is False

    pk.delete_pass(member_id)
    with pytest.raises(NotFoundError):
        pk.get_pass(member_id)
    with pytest.raises(NotFoundError):
        pk.delete_pass(member_id)


def test_list_streams_the_program_members(target: Target) -> None:
    ids = {target.enrol(f"list-{n}") for n in range(3)}
    program = target.template_id.split("/")[0]
    listed = {row["id"] for row in target.client.iter_members(program, page_size=2)}
    assert ids <= listed


def test_audit_records_hold_no_secret(target: Target) -> None:
    target.enrol("audit")
    assert target.records
    assert all(r.path.startswith("/") and "?" not in r.path for r in target.records)
