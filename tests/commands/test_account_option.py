"""`passsync passes ... --account NAME` with two accounts on two platforms: each command goes
to the named account's platform, and every audit row carries the account it was made on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from tests.actions.fixtures import Provider
from worker.audit import AuditEntry
from worker.cli import app
from worker.db import Database
from worker.providers.passkit.client import PassKitClient
from worker.providers.passkit.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passkit.settings import PassKitSandboxSettings

pytestmark = pytest.mark.usefixtures("cli_admin_token")


@pytest.fixture(scope="module")
def passkit() -> Iterator[SandboxHandle]:
    with running_sandbox(PassKitSandboxSettings(host="127.0.0.1", port=0)) as handle:
        yield handle


@pytest.fixture
def two_accounts(
    provider: Provider, passkit: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> Provider:
    """`passcreator` (the default, from the shared fixture) and `loyalty`, a PassKit account."""
    passkit.reset()
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__KIND", "passcreator")
    monkeypatch.setenv("PASSSYNC_PROVIDERS__LOYALTY__KIND", "passkit")
    for key, value in passkit.account_overrides().items():
        monkeypatch.setenv(f"PASSSYNC_PROVIDERS__LOYALTY__{key.upper()}", value)
    monkeypatch.setenv("PASSSYNC_SYNC__DEFAULT_ACCOUNT", "passcreator")
    return provider


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def audit_accounts(provider: Provider) -> list[tuple[str, str, str]]:
    database = Database(provider.database_url, pool_size=1)
    try:
        with database.sessions() as session:
            rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            return [(r.provider, r.action, r.outcome) for r in rows]
    finally:
        database.dispose()


def test_each_command_goes_to_the_named_account_and_is_audited_with_it(
    two_accounts: Provider, passkit: SandboxHandle
) -> None:
    # Given a member on the PassKit account only
    with PassKitClient(passkit.account(max_attempts=1, backoff_seconds=0.0)) as client:
        template = next(t.template_id for t in client.list_templates() if t.name == "Loyalty Card")
        member = client.create_pass(template_id=template, user_provided_id="crm-7", fields={})
    # When it is read with --account loyalty, and without (the default account)
    named = run("passes", "get", member.pass_id, "--account", "loyalty", "--json")
    default = run("passes", "get", member.pass_id, "--json")
    unknown = run("passes", "get", member.pass_id, "--account", "nope", "--json")
    # Then the named account finds it, the default (another platform) does not
    assert named.exit_code == 0, named.stderr
    assert json.loads(named.stdout)["pass_id"] == member.pass_id
    assert default.exit_code == 1
    assert unknown.exit_code == 2
    assert "unknown provider account 'nope'" in unknown.stderr
    # and each provider call is audited under the account it went to (none for "nope")
    rows = audit_accounts(two_accounts)
    assert {account for account, _, _ in rows} == {"loyalty", "passcreator"}
    assert [o for a, _, o in rows if a == "loyalty"][-1] == "ok"
    assert all(o != "ok" for a, _, o in rows if a == "passcreator")


def test_pass_commands_work_through_the_port_on_a_platform_without_those_actions(
    two_accounts: Provider, passkit: SandboxHandle
) -> None:
    # Given a PassKit account, whose action catalogue names its calls after members
    with PassKitClient(passkit.account(max_attempts=1, backoff_seconds=0.0)) as client:
        template = next(t.template_id for t in client.list_templates() if t.name == "Loyalty Card")
    on = ("--account", "loyalty", "--json")
    # When a pass is created, changed, voided, read and deleted with `passsync passes`
    made = run(
        "passes",
        "create",
        "--template",
        template,
        "--user-provided-id",
        "crm-8",
        "--field",
        "forename=Ada",
        *on,
    )
    assert made.exit_code == 0, made.stderr
    pass_id = json.loads(made.stdout)["pass_id"]
    changed = run("passes", "update", pass_id, "--field", "surname=K", *on)
    voided = run("passes", "void", pass_id, *on)
    read = run("passes", "get", pass_id, *on)
    deleted = run("passes", "delete", pass_id, "--yes", *on)
    # Then each went to PassKit through the port, and was audited on the account
    assert [r.exit_code for r in (changed, voided, read, deleted)] == [0, 0, 0, 0], [
        r.stderr for r in (changed, voided, read, deleted)
    ]
    assert json.loads(voided.stdout)["voided"] is True
    assert json.loads(read.stdout)["user_provided_id"] == "crm-8"
    assert json.loads(deleted.stdout) == {"pass_id": pass_id, "deleted": True}
    (member,) = [m for m in passkit.members() if m.get("externalId") == "crm-8"]
    assert member["person"] == {"forename": "Ada", "surname": "K"}
    assert member.get("deleted") is True
    rows = audit_accounts(two_accounts)
    assert rows and {account for account, _, _ in rows} == {"loyalty"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("get", "m1", "--field-mapping"), "--field-mapping: not available on a PassKit account"),
        (("delete", "m1", "--yes", "--missing-ok"), "--missing-ok: not available"),
        (("update", "m1", "--field", "a=b", "--replace"), "--replace: not available"),
        (("create", "--template", "p/t", "--barcode", "1"), "--barcode: not available"),
        (("create", "--template", "p/t"), "--user-provided-id: required on a PassKit account"),
    ],
)
def test_an_option_only_the_other_platform_has_is_refused_before_any_call(
    two_accounts: Provider, args: tuple[str, ...], message: str
) -> None:
    result = run("passes", *args, "--account", "loyalty")
    assert result.exit_code == 2
    assert message in result.stderr
    assert audit_accounts(two_accounts) == []
