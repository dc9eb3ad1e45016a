"""Contract suite: the thirteen actions through the client, against the sandbox and live.

Always runs against the sandbox. Runs against the real Passcreator API only when
PASSCREATOR_API_KEY and PASSCREATOR_TEMPLATE_ID are set and CI is not; template writes live
also need PASSCREATOR_LIVE_TEMPLATES=1. Live runs create passes with a unique
userProvidedId prefix and delete them afterwards.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pydantic import SecretStr

from tests.providers.live import live_env, needs_sandbox
from worker.providers.errors import (
    AlreadyExistsError,
    NotFoundError,
    RateLimitedError,
    TransientError,
)
from worker.providers.passcreator.client import CallRecord, PasscreatorClient
from worker.providers.passcreator.models import AppScan, TemplateCreate, WebhookSubscribe
from worker.providers.passcreator.query import Operator, PassQuery
from worker.providers.passcreator.sandbox.server import SandboxHandle
from worker.providers.passcreator.sandbox.store import template_id_for
from worker.providers.passcreator.settings import PasscreatorSettings

LOYALTY = template_id_for("Loyalty Card")


@dataclass
class Target:
    """Where the suite runs: a client, a template to use, and the sandbox when it is one."""

    client: PasscreatorClient
    template_id: str
    prefix: str
    records: list[CallRecord]
    sandbox: SandboxHandle | None = None
    created: list[str] = field(default_factory=list)

    def upid(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def create(self, name: str, **fields: object) -> str:
        made = self.client.create_pass(
            template_id=self.template_id, user_provided_id=self.upid(name), fields=dict(fields)
        )
        self.created.append(made.pass_id)
        return made.pass_id


def _live_settings() -> tuple[PasscreatorSettings, str]:
    env = live_env("Passcreator", ("PASSCREATOR_API_KEY", "PASSCREATOR_TEMPLATE_ID"))
    key, template = env["PASSCREATOR_API_KEY"], env["PASSCREATOR_TEMPLATE_ID"]
    base = os.environ.get("PASSCREATOR_BASE_URL", "https://app.passcreator.com")
    return PasscreatorSettings(base_url=base, api_key=SecretStr(key)), template


@pytest.fixture(params=["sandbox", "live"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    records: list[CallRecord] = []
    prefix = f"passsync-contract-{uuid.uuid4().hex[:10]}"
    sandbox: SandboxHandle | None = None
    if request.param == "sandbox":
        sandbox = request.getfixturevalue("sandbox_server")
        settings = PasscreatorSettings(
            base_url=sandbox.base_url,
            api_key=SecretStr(sandbox.api_key),
            backoff_seconds=0.0,
            timeout_seconds=2.0,
        )
        template = LOYALTY
    else:
        settings, template = _live_settings()
    with PasscreatorClient(settings, on_attempt=records.append) as client:
        found = Target(client, template, prefix, records, sandbox)
        yield found
        for pass_id in found.created:
            client.delete_pass(pass_id, missing_ok=True)


def sandbox_only(target: Target) -> SandboxHandle:
    needs_sandbox(target.sandbox)
    assert target.sandbox is not None
    return target.sandbox


# -- the thirteen actions ----------------------------------------------------------------------


def test_create_get_exists_update_delete(target: Target) -> None:
    pc = target.client
    # given
    pass_id = target.create("life", firstName="Ada", points="1")
    upid = target.upid("life")
    # when / then: get by uid and by userProvidedId
    details = pc.get_pass(pass_id)
    assert (details.pass_id, details.user_provided_id) == (pass_id, upid)
    assert details.template_id == target.template_id
    assert details.fields["firstName"] == "Ada"
    assert pc.get_pass(upid).pass_id == pass_id
    # exists, by each kind of identifier
    assert pc.pass_exists(upid).pass_id == pass_id
    assert pc.pass_exists(pass_id, by="pass_id").exists is True
    assert details.barcode_value is not None
    assert pc.pass_exists(details.barcode_value, by="barcode").pass_id == pass_id
    # update merges
    pc.update_pass(pass_id, {"points": "5"})
    assert pc.get_pass(pass_id).fields == details.fields | {"points": "5"}
    # a second create with the same id is refused, and nothing new is stored
    with pytest.raises(AlreadyExistsError):
        pc.create_pass(template_id=target.template_id, user_provided_id=upid, fields={})
    # delete, then it is gone everywhere
    pc.delete_pass(pass_id)
    with pytest.raises(NotFoundError):
        pc.get_pass(pass_id)
    with pytest.raises(NotFoundError):
        pc.update_pass(pass_id, {"points": "6"})
    assert pc.pass_exists(upid).exists is False
    with pytest.raises(NotFoundError):
        pc.delete_pass(pass_id)


def test_update_with_replace_drops_fields_not_sent(target: Target) -> None:
    sandbox = sandbox_only(target)  # replacing a live pass's record is not reversible
    pass_id = target.create("replace", firstName="Ada", points="1")
    target.client.update_pass(pass_id, {"points": "2"}, replace=True)
    assert target.client.get_pass(pass_id).fields == {"points": "2"}
    assert sandbox.stats()["calls"]["POST /api/v3/pass/{identifier}"] == 1


def test_template_fields_name_each_property_with_its_id(target: Target) -> None:
    fields = target.client.template_fields(target.template_id)
    by_name = {f.name: f for f in fields}
    # the v3 create keys a rule may set are always there; each property carries its id
    assert {"barcodeValue", "groupingIdentifier"} <= set(by_name)
    properties = [f for f in fields if f.type != "pass"]
    assert all(f.id for f in properties)
    if target.sandbox is not None:
        assert [f.name for f in properties] == [
            "firstName",
            "lastName",
            "email",
            "tier",
            "points",
            "visits",
        ]
    assert target.records[-1].action == "template_fields"
    assert target.records[-1].path == "/api/pass-template/{id}"


def test_list_search_and_query(target: Target) -> None:
    pc = target.client
    # given three passes with a marker only they carry
    marker = target.prefix
    ids = [target.create(f"q{i}", tier=tier, lastName=marker) for i, tier in enumerate("abc")]
    # when / then: list (newest first) holds them
    listed = pc.list_passes(template_id=target.template_id, page_size=2)
    assert [r.pass_id for r in listed if r.pass_id in ids] == ids[::-1]
    # search by the marker
    found = pc.search_passes(marker, template_id=target.template_id)
    assert sorted(r.pass_id for r in found) == sorted(ids)
    # Query Language: (userProvidedId = q0) OR (userProvidedId = q2 AND tier = c)
    query = (
        PassQuery(template_id=target.template_id)
        .where("userProvidedId", Operator.EQUALS, target.upid("q0"))
        .or_where("userProvidedId", Operator.EQUALS, target.upid("q2"))
        .where("tier", Operator.EQUALS, "c")
    )
    assert sorted(r.pass_id for r in pc.query_passes(query)) == sorted([ids[0], ids[2]])
    # nothing matches an unknown id
    nobody = PassQuery().where("userProvidedId", Operator.EQUALS, target.upid("nobody"))
    assert pc.query_passes(nobody) == []


def test_listing_follows_page_next_across_pages(target: Target) -> None:
    sandbox = sandbox_only(target)
    for i in range(5):
        target.create(f"p{i}")
    rows = target.client.list_passes(page_size=2)
    assert [r.user_provided_id for r in rows] == [target.upid(f"p{i}") for i in range(4, -1, -1)]
    # the first page and the two pages reached through page.next
    assert sandbox.stats()["calls"]["GET /api/v3/pass"] == 3


def test_the_ignored_user_provided_id_parameter_is_never_relied_on(target: Target) -> None:
    sandbox = sandbox_only(target)
    target.create("old")
    target.create("new")
    assert target.client.pass_exists(target.upid("old")).exists is True
    assert target.client.pass_exists(target.upid("never")).exists is False
    assert sandbox.configure()["ignore_user_provided_id_param"] is True


def test_list_and_get_templates(target: Target) -> None:
    templates = {t.template_id: t.name for t in target.client.list_templates()}
    assert target.template_id in templates
    details = target.client.get_template(target.template_id)
    assert details.template_id == target.template_id
    assert details.name == templates[target.template_id]


def test_create_update_delete_template(target: Target) -> None:
    if target.sandbox is None and os.environ.get("PASSCREATOR_LIVE_TEMPLATES") != "1":
        pytest.skip("live template writes need PASSCREATOR_LIVE_TEMPLATES=1")
    pc = target.client
    created = pc.create_template(
        TemplateCreate(name=f"{target.prefix} promo", type="coupon", description="d")
    )
    assert created.template_id is not None
    tid = created.template_id
    try:
        pc.update_template(tid, {"description": "changed"}, publish=True)
        assert pc.get_template(tid).description == "changed"
        assert tid in {t.template_id for t in pc.list_templates()}
    finally:
        pc.delete_template(tid)
    assert tid not in {t.template_id for t in pc.list_templates()}
    with pytest.raises(NotFoundError):
        pc.get_template(tid)


# -- the sync's extra actions ------------------------------------------------------------------


def test_void_unvoid_push_and_scan(target: Target) -> None:
    sandbox = sandbox_only(target)
    pc = target.client
    pass_id = target.create("extras")
    pc.send_push(pass_id, "Hello")
    pc.set_voided(pass_id, True)
    assert pc.get_pass(pass_id).voided is True
    pc.set_voided(pass_id, False)
    scan = pc.record_app_scan(AppScan(app_configuration_id="cfg", pass_id=pass_id, set_voided=True))
    assert pc.get_pass(pass_id).voided is True
    assert sandbox.pushes() == [{"passId": pass_id, "text": "Hello"}]
    assert [s["appScanId"] for s in sandbox.scans()] == [scan.app_scan_id]


def test_webhooks_and_statistics(target: Target) -> None:
    sandbox = sandbox_only(target)
    pc = target.client
    target.create("stats")
    hook = WebhookSubscribe(target_url="https://hooks.test/pc", event="pass_created")
    assert pc.list_webhooks() == []
    made = pc.subscribe_webhook(hook, template_id=target.template_id)
    assert [h.subscription_id for h in pc.list_webhooks()] == [made.subscription_id]
    assert len(sandbox.hooks()) == 1
    stats = pc.template_statistics(target.template_id)
    assert [p.passes for p in stats.created_passes] == [1]


# -- faults (sandbox only) ---------------------------------------------------------------------


def _seed_for_fault_then_clean(probability: float) -> int:
    """A seed whose first draw injects a fault and whose second does not."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if rng.random() < probability and rng.random() >= probability:
            return seed
    raise AssertionError("no such seed")


def test_429_with_and_without_retry_after(target: Target) -> None:
    sandbox = sandbox_only(target)
    sandbox.configure(rate_limit_per_minute=1)
    target.client.list_templates()
    with pytest.raises(RateLimitedError) as with_header:
        target.client.list_templates()
    sandbox.configure(send_retry_after=False)
    with pytest.raises(RateLimitedError) as without:
        target.client.list_templates()
    assert with_header.value.retry_after == 60.0
    assert without.value.retry_after == 5.0  # the client's default_retry_after_seconds
    assert sandbox.stats()["rate_limited"] == 2


def test_timeout_then_success(target: Target) -> None:
    sandbox = sandbox_only(target)
    # given the first answer is held past the client's timeout, the second is not
    sandbox.configure(slow_probability=0.5, slow_ms=800, seed=_seed_for_fault_then_clean(0.5))
    settings = PasscreatorSettings(
        base_url=sandbox.base_url,
        api_key=SecretStr(sandbox.api_key),
        backoff_seconds=0.0,
        timeout_seconds=0.3,
    )
    records: list[CallRecord] = []
    with PasscreatorClient(settings, on_attempt=records.append) as pc:
        assert len(pc.list_templates()) == 3
    assert [(r.attempt, r.outcome) for r in records] == [(1, "timeout"), (2, "ok")]
    assert sandbox.stats()["faults"]["slow"] == 1


def test_503_html_page_exhausts_attempts_with_a_clear_error(target: Target) -> None:
    sandbox = sandbox_only(target)
    sandbox.configure(error_503_probability=1.0)
    with pytest.raises(TransientError) as err:
        target.client.list_templates()
    assert err.value.status == 503
    assert "503 Service Temporarily Unavailable" in err.value.message
    assert [r.outcome for r in target.records] == ["server_error"] * 3


def test_commit_then_fail_on_delete_is_success_after_the_retry(target: Target) -> None:
    sandbox = sandbox_only(target)
    pass_id = target.create("ctf")
    sandbox.configure(commit_then_fail_probability=1.0)
    target.client.delete_pass(pass_id)
    assert [r.outcome for r in target.records[-2:]] == ["server_error", "not_found"]
    assert [p["deleted"] for p in sandbox.passes()] == [True]


def test_commit_then_fail_on_push_is_not_sent_twice(target: Target) -> None:
    sandbox = sandbox_only(target)
    pass_id = target.create("push-once")
    sandbox.configure(commit_then_fail_probability=1.0)
    with pytest.raises(TransientError):
        target.client.send_push(pass_id, "once")
    assert sandbox.pushes() == [{"passId": pass_id, "text": "once"}]
