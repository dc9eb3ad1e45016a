"""`passsync doctor`: one line per check, exit 1 on any failure, --json (issue 18, item 7)."""

from __future__ import annotations

import dataclasses
import json
from base64 import b64encode

import pytest
from typer.testing import CliRunner

from tests.actions.fixtures import Provider, unmigrated_url
from worker.cli import app
from worker.providers import registry
from worker.providers.passkit.sandbox.server import running_sandbox as passkit_sandbox
from worker.providers.passkit.settings import PassKitSandboxSettings
from worker.providers.port import TemplateField
from worker.stack import free_port

WHSEC = "whsec_" + b64encode(b"0123456789abcdef0123456789abcdef").decode()


def doctor(*args: str) -> tuple[int, dict[str, tuple[str, str]]]:
    result = CliRunner().invoke(app, ["doctor", "--json", *args])
    body = json.loads(result.stdout)
    assert body["ok"] is (result.exit_code == 0)
    return result.exit_code, {c["name"]: (c["status"], c["detail"]) for c in body["checks"]}


@pytest.fixture
def ready(provider: Provider, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Provider:
    """Everything doctor checks is in place: secrets, migrated database, broker, sandbox, and
    an outbound destination that answers (the sandbox itself)."""
    monkeypatch.setenv("PASSSYNC_SOURCES__CRM__SECRET", WHSEC)
    monkeypatch.setenv("PASSSYNC_BROKER_URL", redis_url)
    monkeypatch.setenv("PASSSYNC_OUTBOUND__DESTINATIONS__CRM__URL", provider.sandbox.base_url)
    monkeypatch.setenv("PASSSYNC_OUTBOUND__DESTINATIONS__CRM__SECRET", WHSEC)
    return provider


@pytest.mark.usefixtures("ready")
def test_every_check_passes_when_everything_is_in_place() -> None:
    code, checks = doctor()
    assert code == 0
    assert {name: status for name, (status, _) in checks.items()} == {
        "config": "ok",
        "secrets": "ok",
        "database": "ok",
        "broker": "ok",
        "provider passcreator": "ok",
        "templates": "ok",
        "fields": "ok",
        "outbound crm": "ok",
        "clock crm": "ok",
    }
    assert checks["provider passcreator"][1].startswith("Passcreator: credential accepted (")
    assert checks["templates"][1] == "every rule's template exists at the provider"
    assert checks["fields"][1] == "every field the rules set is a field of its template"
    # And the table form is one line per check
    table = CliRunner().invoke(app, ["doctor"])
    assert table.exit_code == 0 and len(table.stdout.splitlines()) == 9


def test_each_failure_is_named_and_exits_1(
    ready: Provider, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    # Given a missing secret, an unmigrated database, a broker and a destination that do not
    # answer, and a credential the provider refuses
    monkeypatch.delenv("PASSSYNC_SOURCES__CRM__SECRET")
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", unmigrated_url(tmp_path))  # type: ignore[arg-type]
    monkeypatch.setenv("PASSSYNC_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    gone = f"http://127.0.0.1:{free_port()}/hooks"
    monkeypatch.setenv("PASSSYNC_OUTBOUND__DESTINATIONS__CRM__URL", gone)
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY", "a-wrong-key")
    # When doctor runs
    code, checks = doctor()
    # Then each problem is one failed check, and the exit code is 1
    assert code == 1
    assert checks["secrets"] == ("fail", "not set: PASSSYNC_SOURCES__CRM__SECRET")
    assert checks["database"] == ("fail", "at an empty schema: run `passsync db upgrade`")
    assert checks["broker"] == ("fail", "unreachable (ConnectionError)")
    refused = checks["provider passcreator"]
    assert refused[0] == "fail" and "401" in refused[1]
    assert checks["templates"][0] == "skip" and "401" in checks["templates"][1]
    assert checks["outbound crm"] == ("fail", "does not answer (ConnectError)")
    assert "clock crm" not in checks


def test_an_invalid_configuration_stops_the_other_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSSYNC_API__PORT", "not-a-port")
    code, checks = doctor()
    assert code == 1 and list(checks) == ["config"]
    assert checks["config"][0] == "fail" and "PASSSYNC_API__PORT" in checks["config"][1]


@pytest.mark.usefixtures("ready")
def test_a_field_the_template_lacks_fails_where_the_platform_lists_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a platform whose templates accept only firstName and email
    from worker.commands import doctor as module

    real = module.registry.account

    def account(settings: object, name: str | None = None) -> object:
        found = real(settings, name)  # type: ignore[arg-type]
        listed = [TemplateField(name="firstName"), TemplateField(name="email")]
        kind = dataclasses.replace(found.kind, template_fields=lambda client, tid: listed)
        return dataclasses.replace(found, kind=kind)

    monkeypatch.setattr(module.registry, "account", account)
    # When doctor runs
    code, checks = doctor()
    # Then the default rule's other fields are named, and the exit code is 1
    assert code == 1
    status, detail = checks["fields"]
    assert status == "fail"
    assert detail == "; ".join(
        f"rule 'loyalty_card': field {name!r} is not a field of template 'Loyalty Card' "
        "(its fields: email, firstName)"
        for name in ("lastName", "tier", "points")
    )


@pytest.mark.usefixtures("ready")
def test_a_field_the_passcreator_template_lacks_fails_the_fields_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a rule that sets couponCode on the sandbox's Loyalty Card (read from its describe)
    rule = {
        "name": "coupon_on_card",
        "on": ["customer.created"],
        "actions": [
            {
                "upsert": "loyalty",
                "template": "Loyalty Card",
                "fields": {"firstName": "customer.first_name", "couponCode": "data.code"},
            }
        ],
    }
    monkeypatch.setenv("PASSSYNC_SYNC__RULES", json.dumps([rule]))
    # When doctor runs
    code, checks = doctor()
    # Then the fields check fails naming the rule, the field and the template
    assert code == 1
    assert checks["templates"][0] == "ok"
    assert checks["fields"] == (
        "fail",
        "rule 'coupon_on_card': field 'couponCode' is not a field of template 'Loyalty Card' "
        "(its fields: email, firstName, lastName, points, tier, visits)",
    )


@pytest.mark.usefixtures("ready")
def test_the_fields_check_covers_every_account_and_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a second account on PassKit (its sandbox) whose rule sets a Person field PassKit lacks
    kit = registry.get_kind("passkit").sandbox
    assert kit is not None
    settings = PassKitSandboxSettings(port=0)
    rules = [
        {
            "name": "card",
            "on": ["customer.created"],
            "actions": [
                {
                    "upsert": "loyalty",
                    "template": "Loyalty Card",
                    "fields": {"firstName": "customer.first_name"},
                }
            ],
        },
        {
            "name": "member",
            "on": ["customer.created"],
            "actions": [
                {
                    "upsert": "member",
                    "account": "loyalty",
                    "template": "Loyalty Card",
                    "fields": {"person.nickname": "customer.first_name"},
                }
            ],
        },
    ]
    with passkit_sandbox(settings) as handle:
        monkeypatch.setenv("PASSSYNC_PROVIDERS__LOYALTY__KIND", "passkit")
        for key, value in kit.account_overrides(settings, handle.base_url).items():
            monkeypatch.setenv(f"PASSSYNC_PROVIDERS__LOYALTY__{key.upper()}", value)
        monkeypatch.setenv("PASSSYNC_SYNC__DEFAULT_ACCOUNT", "passcreator")
        monkeypatch.setenv("PASSSYNC_SYNC__RULES", json.dumps(rules))
        # When doctor runs
        code, checks = doctor()
    # Then both accounts' templates are found, and the PassKit rule's wrong field is named
    assert code == 1
    assert checks["provider loyalty"][0] == "ok"
    assert checks["templates"][0] == "ok"
    status, detail = checks["fields"]
    assert status == "fail"
    assert detail.startswith(
        "rule 'member': field 'person.nickname' is not a field of template 'Loyalty Card' ("
    )
    assert detail.endswith("(account 'loyalty')")
