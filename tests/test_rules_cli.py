"""`passsync rules check|explain`, and rules checked when a process starts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import respx
import yaml
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from worker.audit import AuditEntry
from worker.cli import app
from worker.commands import rules as rules_command
from worker.commands.rules import check_templates_at_start
from worker.config import Settings, load_settings
from worker.db import Database, utcnow
from worker.migrate import upgrade
from worker.providers import registry
from worker.providers.errors import TransientError
from worker.providers.memory import MemoryProvider
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import SandboxSettings
from worker.providers.passkit.sandbox.server import running_sandbox as passkit_sandbox
from worker.providers.passkit.settings import PassKitSandboxSettings
from worker.stack import free_port
from worker.sync.models import PassMapping
from worker.sync.rules import RulesError, content_hash

SHIPPED = Path(__file__).resolve().parent.parent / "config.yaml"
GOOD = """
sync:
  rules:
    - name: card
      on: [customer.updated, loyalty.tier_changed]
      actions:
        - upsert: loyalty
          template: Loyalty Card
          fields: {tier: customer.attributes.tier}
    - name: tier_message
      on: [loyalty.tier_changed]
      when: customer.attributes.tier in ["gold", "platinum"]
      actions:
        - push: loyalty
          message: "You are {customer.attributes.tier} now"
    - name: expire
      on: [membership.expired]
      actions:
        - void: loyalty
"""
BAD = """
sync:
  rules:
    - name: broken
      on: [order.completed]
      when: customer.attributes.orders_count ==
      actions:
        - delete: ticket
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def event_file(
    tmp_path: Path, kind: str = "loyalty.tier_changed", at: str = "", tier: str = "gold"
) -> Path:
    body = {
        "id": "evt-9",
        "type": kind,
        "occurred_at": at or datetime(2026, 3, 1, 12, tzinfo=UTC).isoformat(),
        "customer": {"id": "c1", "first_name": "Ada", "attributes": {"tier": tier}},
    }
    return write(tmp_path, "event.json", json.dumps(body))


def test_check_accepts_the_shipped_config() -> None:
    result = invoke("rules", "check", str(SHIPPED))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("9 rules OK: loyalty_card, first_order_welcome_discount,")


def test_check_prints_one_line_per_problem_and_exits_1(tmp_path: Path) -> None:
    result = invoke("rules", "check", str(write(tmp_path, "bad.yaml", BAD)))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "rule 'broken' when: bad expression 'customer.attributes.orders_count ==': "
        "expected a value at position 36, found the end",
        "rule 'broken': delete of unknown pass key 'ticket' (no rule upserts it)",
    ]


def test_check_names_a_missing_config_file(tmp_path: Path) -> None:
    result = invoke("rules", "check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert result.output.strip() == f"config file {tmp_path / 'nope.yaml'}: no such file"


def test_check_with_provider_reports_templates_the_provider_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = MemoryProvider(templates={"tpl-1": "Welcome Discount"})
    monkeypatch.setattr(rules_command, "build_provider", lambda _settings, *_a, **_: provider)
    result = invoke("rules", "check", "--provider", str(write(tmp_path, "c.yaml", GOOD)))
    assert result.exit_code == 1
    assert result.output.strip() == (
        "rule 'card': template 'Loyalty Card' not found at provider (known: Welcome Discount)"
    )
    provider.templates["tpl-2"] = "Loyalty Card"
    provider.fields["tpl-2"] = ["tier"]
    result = invoke("rules", "check", "--provider", str(tmp_path / "c.yaml"))
    assert result.exit_code == 0
    assert result.output.strip() == "3 rules OK: card, tier_message, expire"


# The shipped rules' templates as the strict simulator had them: no couponCode on the
# Welcome Discount, no event on the Event Ticket, no visits on the Loyalty Card.
LACKING = {
    "Loyalty Card": ["firstName", "lastName", "email", "tier", "points"],
    "Welcome Discount": ["firstName"],
    "Event Ticket": ["firstName", "lastName", "seat"],
}
SANDBOX_KEY = "rules-check-key-5d1"


@contextmanager
def passcreator_sandbox(
    monkeypatch: pytest.MonkeyPatch, templates: dict[str, list[str]] | None = None
) -> Iterator[SandboxHandle]:
    """A Passcreator sandbox (its templates: `templates`, else the seeds) that the
    Passcreator account points at."""
    extra: dict[str, Any] = {} if templates is None else {"templates": templates}
    settings = SandboxSettings(port=0, api_key=SecretStr(SANDBOX_KEY), **extra)
    with running_sandbox(settings) as handle:
        monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL", handle.base_url)
        monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY", SANDBOX_KEY)
        yield handle


def test_check_with_provider_names_each_field_its_template_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # When the shipped rules are checked against templates that lack three of their fields
    with passcreator_sandbox(monkeypatch, LACKING):
        result = invoke("rules", "check", "--provider", str(SHIPPED))
    # Then each wrong field is one line (rule, field, template), and the exit code is 1
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "rule 'ticket_issued': field 'event' is not a field of template 'Event Ticket' "
        "(its fields: firstName, lastName, seat)",
        "usage rule 'loyalty' (visit): field 'visits' is not a field of template "
        "'Loyalty Card' (its fields: email, firstName, lastName, points, tier)",
        "rule 'first_order_welcome_discount': field 'couponCode' is not a field of template "
        "'Welcome Discount' (its fields: firstName)",
    ]


def test_the_shipped_rules_pass_against_the_seeded_passcreator_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with passcreator_sandbox(monkeypatch):
        result = invoke("rules", "check", "--provider", str(SHIPPED))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("9 rules OK: ")


def test_the_shipped_rules_pass_against_the_seeded_passkit_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the shipped rules on a PassKit account served by the PassKit sandbox
    kit = registry.get_kind("passkit").sandbox
    assert kit is not None
    settings = PassKitSandboxSettings(port=0)
    with passkit_sandbox(settings) as handle:
        monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSKIT__KIND", "passkit")
        for key, value in kit.account_overrides(settings, handle.base_url).items():
            monkeypatch.setenv(f"PASSSYNC_PROVIDERS__PASSKIT__{key.upper()}", value)
        monkeypatch.setenv("PASSSYNC_SYNC__DEFAULT_ACCOUNT", "passkit")
        # When they are checked at the provider
        result = invoke("rules", "check", "--provider", str(SHIPPED))
    # Then every template and field is there
    assert result.exit_code == 0, result.output
    assert result.output.startswith("9 rules OK: ")


def test_a_person_field_passkit_lacks_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    kit = registry.get_kind("passkit").sandbox
    assert kit is not None
    settings = PassKitSandboxSettings(port=0)
    card = {"upsert": "loyalty", "template": "Loyalty Card"}
    rules = [
        {
            "name": "card",
            "on": ["customer.created"],
            "actions": [card | {"fields": {"person.nickname": "customer.first_name"}}],
        }
    ]
    with passkit_sandbox(settings) as handle:
        monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSKIT__KIND", "passkit")
        for key, value in kit.account_overrides(settings, handle.base_url).items():
            monkeypatch.setenv(f"PASSSYNC_PROVIDERS__PASSKIT__{key.upper()}", value)
        monkeypatch.setenv("PASSSYNC_SYNC__DEFAULT_ACCOUNT", "passkit")
        monkeypatch.setenv("PASSSYNC_SYNC__RULES", json.dumps(rules))
        monkeypatch.setenv("PASSSYNC_USAGE__RULES", "[]")
        result = invoke("rules", "check", "--provider")
    assert result.exit_code == 1
    assert result.output.startswith(
        "rule 'card': field 'person.nickname' is not a field of template 'Loyalty Card'"
    )


def test_worker_start_refuses_a_wrong_field_but_not_an_unreachable_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the shipped config against templates lacking three of its fields
    monkeypatch.setenv("PASSSYNC_CONFIG", str(SHIPPED))
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'start.db'}")
    # When a worker starts, then it refuses, naming each wrong field
    with passcreator_sandbox(monkeypatch, LACKING), pytest.raises(RulesError) as refused:
        check_templates_at_start(load_settings())
    assert [line.split(": ")[1] for line in refused.value.problems] == [
        "field 'event' is not a field of template 'Event Ticket' (its fields",
        "field 'visits' is not a field of template 'Loyalty Card' (its fields",
        "field 'couponCode' is not a field of template 'Welcome Discount' (its fields",
    ]
    # And with the provider out of reach it starts, with one warning
    gone = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL", gone)
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__MAX_ATTEMPTS", "1")
    check_templates_at_start(load_settings())
    assert "could not check the rules' templates and fields at start" in caplog.text


def test_invalid_rules_stop_a_process_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSSYNC_CONFIG", str(write(tmp_path, "bad.yaml", BAD)))
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    result = invoke("db", "upgrade")
    assert isinstance(result.exception, RulesError)
    assert len(result.exception.problems) == 2
    assert not (tmp_path / "x.db").exists()  # nothing ran


def settings_with(text: str) -> Settings:
    return load_settings(sync=yaml.safe_load(text)["sync"])


def test_worker_start_refuses_unknown_templates_but_not_an_unreachable_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_with(GOOD)
    provider = MemoryProvider(templates={"tpl-1": "Other"})
    monkeypatch.setattr(rules_command, "build_provider", lambda _settings, *_a, **_: provider)
    with pytest.raises(RulesError, match="rule 'card': template 'Loyalty Card' not found"):
        check_templates_at_start(settings)
    provider.fail_next["list_templates"] = [TransientError("connection refused")]
    check_templates_at_start(settings)  # logged, not fatal: events wait and retry
    assert (
        "could not check the rules' templates and fields at start: connection refused"
        in caplog.text
    )


def test_worker_start_check_is_audited_as_a_system_call(tmp_path: Path) -> None:
    # Given a migrated database and a provider (respx) that lists the rule's template
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    settings = load_settings(
        database_url=url,
        sync=yaml.safe_load(GOOD)["sync"],
        providers={"passcreator": {"base_url": "https://pc.test", "api_key": "key-123"}},
    )
    with respx.mock(assert_all_called=True) as mock:
        mock.get("https://pc.test/api/pass-template").respond(
            200, json=[{"identifier": "tpl-1", "name": "Loyalty Card"}]
        )
        mock.get("https://pc.test/api/pass-template/tpl-1").respond(
            200, json={"identifier": "tpl-1", "dynamicFields": {"additionalProperties": {}}}
        )
        # When the worker's start-up check runs (the rule sets tier, which the template lacks)
        with pytest.raises(RulesError, match="field 'tier' is not a field of template"):
            check_templates_at_start(settings)
    # Then its provider calls are on record, as the system's
    database = Database(url)
    with database.session() as session:
        entries = session.scalars(select(AuditEntry)).all()
        recorded = [(e.action, e.actor_kind, e.status) for e in entries]
    database.dispose()
    assert recorded == [("list_templates", "system", 200), ("template_fields", "system", 200)]


def test_explain_without_a_database_plans_a_create_and_a_push(tmp_path: Path) -> None:
    config = write(tmp_path, "c.yaml", GOOD + f"database_url: sqlite:///{tmp_path / 'none.db'}\n")
    result = invoke("rules", "explain", str(event_file(tmp_path)), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "event evt-9 (loyalty.tier_changed) for customer c1",
        "rules:",
        "  match card: matched",
        "  match tier_message: matched",
        "  skip  expire: not on loyalty.tier_changed",
        f"calls (dry run; pass state from no database at {tmp_path / 'none.db'}; "
        "assuming no passes yet):",
        '  loyalty: create template="Loyalty Card" user_provided_id="passsync-loyalty-c1" '
        'fields={"tier": "gold"}',
        '  loyalty: push pass_id="(new loyalty pass)" message="You are gold now"',
    ]
    assert not (tmp_path / "none.db").exists()


@pytest.fixture
def stored_pass(tmp_path: Path) -> Path:
    """A migrated SQLite database holding c1's loyalty pass at tier silver (last event e1)."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    upgrade(url)
    database = Database(url)
    with database.session() as session:
        session.add(
            PassMapping(
                provider="passcreator",
                customer_id="c1",
                pass_key="loyalty",
                user_provided_id="passsync-loyalty-c1",
                provider_pass_id="pass-7",
                template_id="tpl-loyalty",
                status="active",
                content_hash=content_hash("tpl-loyalty", {"tier": "silver"}),
                last_event_at=datetime(2026, 3, 1, 11, tzinfo=UTC),
                last_event_id="e1",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    database.dispose()
    return write(tmp_path, "c.yaml", GOOD + f"database_url: {url}\n")


def explain_json(
    tmp_path: Path, config: Path, kind: str, at: str = "", tier: str = "gold"
) -> dict[str, Any]:
    path = event_file(tmp_path, kind, at, tier)
    result = invoke("rules", "explain", str(path), "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def test_explain_reads_the_mapping_and_plans_an_update(tmp_path: Path, stored_pass: Path) -> None:
    out = explain_json(tmp_path, stored_pass, "loyalty.tier_changed")
    assert out["state_source"] == "database"
    assert [(c["action"], c["call"], c["detail"]) for c in out["calls"]] == [
        ("upsert", "update", {"pass_id": "pass-7", "fields": {"tier": "gold"}}),
        ("push", "push", {"pass_id": "pass-7", "message": "You are gold now"}),
    ]
    assert [c["rules"] for c in out["calls"]] == [["card"], ["tier_message"]]


def test_explain_plans_no_call_for_unchanged_fields(tmp_path: Path, stored_pass: Path) -> None:
    out = explain_json(tmp_path, stored_pass, "customer.updated", tier="silver")
    assert [(c["call"], c["note"]) for c in out["calls"]] == [
        ("none", "unchanged: the pass already shows these fields")
    ]


def test_explain_plans_a_void_and_skips_a_stale_event(tmp_path: Path, stored_pass: Path) -> None:
    out = explain_json(tmp_path, stored_pass, "membership.expired")
    assert [(c["call"], c["detail"]) for c in out["calls"]] == [("void", {"pass_id": "pass-7"})]
    older = datetime(2026, 3, 1, 10, tzinfo=UTC).isoformat()
    out = explain_json(tmp_path, stored_pass, "membership.expired", at=older)
    assert [(c["call"], c["note"]) for c in out["calls"]] == [
        ("none", "stale: the pass already reflects event e1")
    ]


def test_explain_refuses_an_invalid_event(tmp_path: Path) -> None:
    path = write(tmp_path, "e.json", json.dumps({"id": "x", "type": "Bad"}))
    result = invoke("rules", "explain", str(path))
    assert result.exit_code == 1
    assert f"{path}: type: String should match pattern" in result.output
    assert f"{path}: occurred_at: Field required" in result.output
