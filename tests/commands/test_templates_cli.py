"""`passsync templates ...` in-process against the sandbox: shapes, audit rows, error exits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.actions.fixtures import LOYALTY, Provider
from worker.audit import Actor
from worker.cli import app

pytestmark = pytest.mark.usefixtures("cli_admin_token")

USER = f"cli:{Actor.cli().id}"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["templates", *args])


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_list_and_get(provider: Provider) -> None:
    listed = run_json("list")
    assert listed["count"] == 3
    assert {"template_id": LOYALTY, "name": "Loyalty Card"} in listed["templates"]
    got = run_json("get", LOYALTY)
    assert (got["template_id"], got["name"]) == (LOYALTY, "Loyalty Card")
    table = run("list")
    assert table.exit_code == 0
    assert "3 templates" in table.stdout
    assert "Welcome Discount" in table.stdout
    assert provider.audit() == [
        ("list_templates", USER, "ok", None),
        ("get_template", USER, "ok", None),
        ("list_templates", USER, "ok", None),
    ]


def test_create_update_publish_and_delete(provider: Provider) -> None:
    # given a new template
    created = run_json(
        "create",
        "--name",
        "Promo",
        "--type",
        "coupon",
        "--extra-json",
        '{"foregroundColor": "#000"}',
    )
    template_id = created["template_id"]
    stored = {t["identifier"]: t for t in provider.sandbox.templates()}[template_id]
    assert stored["data"]["foregroundColor"] == "#000"
    # when it is changed and published
    run_json("update", template_id, "--set", "description=changed", "--publish")
    # then
    assert run_json("get", template_id)["description"] == "changed"
    # when it is deleted
    assert run_json("delete", template_id, "--yes") == {
        "template_id": template_id,
        "deleted": True,
    }
    # then
    assert template_id not in {t["template_id"] for t in run_json("list")["templates"]}
    assert [entry[0] for entry in provider.audit()] == [
        "create_template",
        "update_template",
        "publish_template",
        "get_template",
        "delete_template",
        "list_templates",
    ]


def test_bad_input_exits_2_and_sends_nothing(provider: Provider) -> None:
    cases = {
        ("create", "--name", "Promo", "--type", "flyer"): (
            "passsync: invalid arguments for create_template: type: Input should be 'coupon'"
        ),
        ("update", LOYALTY): (
            "passsync: invalid arguments for update_template: changes: Dictionary should have"
        ),
        ("update", LOYALTY, "--set", "a=1", "--changes-json", "{}"): (
            "passsync: give --set or --changes-json, not both"
        ),
        ("create", "--name", "P", "--extra-json", "{"): "passsync: --extra-json: not valid JSON",
    }
    for args, message in cases.items():
        result = run(*args)
        assert (result.exit_code, result.stderr[: len(message)]) == (2, message), args
    assert provider.sandbox.stats()["calls"] == {}
    assert provider.audit() == []


def test_a_missing_template_is_exit_1(provider: Provider) -> None:
    result = run("delete", "no-such-template", "--yes")
    assert result.exit_code == 1
    assert result.stderr == "passsync: delete_template: not found (404)\n"
