"""PassKitClient against the PassKit sandbox: the whole life of a member, and the faults."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from worker.providers.errors import (
    AlreadyExistsError,
    NotFoundError,
    RejectedError,
    TransientError,
)
from worker.providers.passkit.client import CallRecord, PassKitClient
from worker.providers.passkit.sandbox.server import SandboxHandle
from worker.providers.passkit.sandbox.store import program_id_for

LOYALTY = program_id_for("Loyalty Card")
BASE_TIER = f"{LOYALTY}/base"


def client_for(sandbox: SandboxHandle, **overrides: Any) -> PassKitClient:
    values: dict[str, Any] = {"backoff_seconds": 0.0, "max_attempts": 3} | overrides
    return PassKitClient(sandbox.account(**values))


def member(sandbox: SandboxHandle, external_id: str) -> dict[str, Any]:
    rows = [m for m in sandbox.members() if m.get("externalId") == external_id]
    assert len(rows) == 1, rows
    return rows[0]


def test_templates_resolve_program_and_tier_names(passkit_sandbox: SandboxHandle) -> None:
    with client_for(passkit_sandbox) as client:
        names = {t.name: t.template_id for t in client.list_templates()}
    assert names["Loyalty Card"] == BASE_TIER
    assert names["Loyalty Card/Gold"] == f"{LOYALTY}/gold"
    assert names["Loyalty Card/gold"] == f"{LOYALTY}/gold"
    assert names["Event Ticket/Base"] == f"{program_id_for('Event Ticket')}/base"


def test_the_life_of_a_member(passkit_sandbox: SandboxHandle) -> None:
    with client_for(passkit_sandbox) as client:
        created = client.create_pass(
            template_id=BASE_TIER,
            user_provided_id="crm-1",
            fields={"forename": "Anna", "points": 5, "segment": "vip"},
        )
        client.update_pass(created.pass_id, {"points": 0, "segment": "", "surname": "K"})
        after_update = member(passkit_sandbox, "crm-1")
        client.earn_points(created.pass_id, 10)
        client.burn_points(created.pass_id, 4)
        client.set_voided(created.pass_id, True)
        voided = client.get_pass(created.pass_id)
        client.set_voided(created.pass_id, False)
        unvoided = client.get_pass(created.pass_id)
        client.send_push(created.pass_id, "Your card changed")
        client.delete_pass(created.pass_id)
        with pytest.raises(NotFoundError):
            client.delete_pass(created.pass_id)

    assert "points" not in after_update
    assert after_update["metaData"] == {"segment": ""}
    assert after_update["person"] == {"forename": "Anna", "surname": "K"}
    assert (voided.voided, unvoided.voided) == (True, False)
    final = member(passkit_sandbox, "crm-1")
    assert final["points"] == 6
    assert final["deleted"] is True
    assert [m["plainTextContent"] for m in passkit_sandbox.messages()] == ["Your card changed"]


def test_a_duplicate_is_adopted_by_a_fresh_client_without_a_twin(
    passkit_sandbox: SandboxHandle,
) -> None:
    with client_for(passkit_sandbox) as first:
        created = first.create_pass(template_id=BASE_TIER, user_provided_id="crm-1", fields={})
    with client_for(passkit_sandbox) as second:
        with pytest.raises(AlreadyExistsError):
            second.create_pass(template_id=BASE_TIER, user_provided_id="crm-1", fields={})
        found = second.get_pass("crm-1")
    assert found.pass_id == created.pass_id
    assert len(passkit_sandbox.members()) == 1


def test_commit_then_fail_ends_in_adoption_not_a_twin(passkit_sandbox: SandboxHandle) -> None:
    passkit_sandbox.configure(commit_then_fail_probability=1.0)
    with client_for(passkit_sandbox) as client:
        with pytest.raises(AlreadyExistsError):
            client.create_pass(template_id=BASE_TIER, user_provided_id="crm-1", fields={})
        passkit_sandbox.configure(commit_then_fail_probability=0.0)
        found = client.get_pass("crm-1")
    assert found.pass_id == member(passkit_sandbox, "crm-1")["id"]
    assert passkit_sandbox.stats()["creates"] == 1


def test_a_503_burst_shorter_than_the_attempts_is_ridden_out(
    passkit_sandbox: SandboxHandle,
) -> None:
    # One request draws the 503 that starts a burst of two more; then the draws stop.
    passkit_sandbox.configure(error_503_probability=1.0, error_503_burst=2)
    with client_for(passkit_sandbox, max_attempts=1) as trigger, pytest.raises(TransientError):
        trigger.list_programs()
    passkit_sandbox.configure(error_503_probability=0.0)
    records: list[CallRecord] = []
    settings = passkit_sandbox.account(backoff_seconds=0.0, max_attempts=4)
    with PassKitClient(settings, on_attempt=records.append) as client:
        created = client.create_pass(template_id=BASE_TIER, user_provided_id="crm-1", fields={})

    assert [r.status for r in records] == [503, 503, 200]
    assert created.pass_id == member(passkit_sandbox, "crm-1")["id"]
    assert passkit_sandbox.stats()["creates"] == 1


def test_a_503_burst_longer_than_the_attempts_is_transient(
    passkit_sandbox: SandboxHandle,
) -> None:
    passkit_sandbox.configure(error_503_probability=1.0, error_503_burst=10)
    with (
        client_for(passkit_sandbox, max_attempts=3) as client,
        pytest.raises(TransientError, match="503"),
    ):
        client.create_pass(template_id=BASE_TIER, user_provided_id="crm-1", fields={})
    assert passkit_sandbox.members() == []


def test_a_slow_answer_past_the_timeout_is_transient_and_changes_nothing(
    passkit_sandbox: SandboxHandle,
) -> None:
    passkit_sandbox.configure(slow_probability=1.0, slow_ms=400)
    with client_for(passkit_sandbox, timeout_seconds=0.1, max_attempts=1) as client:
        with pytest.raises(TransientError, match="timed out"):
            client.create_pass(template_id=BASE_TIER, user_provided_id="crm-1", fields={})
        passkit_sandbox.configure(slow_probability=0.0)
        time.sleep(0.6)  # past the hold: the request was dropped, not applied late
        assert passkit_sandbox.members() == []
        created = client.create_pass(template_id=BASE_TIER, user_provided_id="crm-1", fields={})
    assert created.pass_id == member(passkit_sandbox, "crm-1")["id"]
    assert passkit_sandbox.stats()["faults"]["slow"] == 1


def test_a_client_clock_far_behind_is_refused_with_a_credential_message(
    passkit_sandbox: SandboxHandle,
) -> None:
    settings = passkit_sandbox.account()
    with (
        PassKitClient(settings, clock=lambda: time.time() - 300) as client,
        pytest.raises(RejectedError) as caught,
    ):
        client.get_member("x")
    assert caught.value.status == 401
    assert "PassKit refused the credentials (401): jwt was issued too long ago" in str(caught.value)


def test_a_wrong_secret_is_refused(passkit_sandbox: SandboxHandle) -> None:
    settings = passkit_sandbox.account(secret=SecretStr("x" * 40))
    with PassKitClient(settings) as client, pytest.raises(RejectedError, match="credentials"):
        client.list_templates()


def test_a_long_lived_token_works(passkit_sandbox: SandboxHandle) -> None:
    settings = passkit_sandbox.account(
        auth="long_lived_token",
        api_key=SecretStr("sandbox-passkit-long-lived-token"),
        secret=None,
    )
    with PassKitClient(settings) as client:
        assert client.list_programs()[0].name == "Loyalty Card"


def test_lists_page_through_every_member(passkit_sandbox: SandboxHandle) -> None:
    with client_for(passkit_sandbox, page_size=4) as client:
        for n in range(10):
            client.create_pass(template_id=BASE_TIER, user_provided_id=f"crm-{n}", fields={})
        rows = list(client.iter_members(LOYALTY))
        total = client.count_members(LOYALTY)
    assert [r["externalId"] for r in rows] == [f"crm-{n}" for n in range(10)]
    assert total == 10


def test_a_broken_stream_is_retried(passkit_sandbox: SandboxHandle) -> None:
    with client_for(passkit_sandbox) as client:
        for n in range(4):
            client.create_pass(template_id=BASE_TIER, user_provided_id=f"crm-{n}", fields={})
        passkit_sandbox.configure(stream_error_probability=0.5, seed=3)
        rows = list(client.iter_members(LOYALTY))
    assert len(rows) == 4


def test_the_pass_links_answer(passkit_sandbox: SandboxHandle) -> None:
    with client_for(passkit_sandbox) as client:
        created = client.create_pass(template_id=BASE_TIER, user_provided_id="crm-1", fields={})
    for link in (created.download_page, created.iphone_uri, created.android_uri):
        assert link is not None
        answer = httpx.get(link, timeout=5)
        assert (answer.status_code, answer.json()["id"]) == (200, created.pass_id)


def test_the_neutral_state_shows_rule_fields_and_template_names(
    passkit_sandbox: SandboxHandle,
) -> None:
    with client_for(passkit_sandbox) as client:
        first = client.create_pass(
            template_id=BASE_TIER,
            user_provided_id="crm-1",
            fields={"firstName": "Ada", "tier": "gold", "points": 120},
        )
        client.update_pass(first.pass_id, {"points": 0})
        gold = client.create_pass(
            template_id=f"{LOYALTY}/gold", user_provided_id="crm-2", fields={"points": 0}
        )
        client.set_voided(gold.pass_id, True)

    rows = {r["external_id"]: r for r in passkit_sandbox.state_rows()}

    assert rows["crm-1"]["template"] == "Loyalty Card"
    assert rows["crm-1"]["fields"] == {"firstName": "Ada", "tier": "gold", "points": 0}
    assert rows["crm-2"]["template"] == "Loyalty Card/Gold"
    assert rows["crm-2"]["fields"] == {"points": 0}
    assert (rows["crm-2"]["voided"], rows["crm-2"]["deleted"]) == (True, False)
    # The API itself leaves the zero out, as protojson does.
    assert "points" not in next(m for m in passkit_sandbox.members() if m["externalId"] == "crm-1")
