"""`passsync tools list|schema`: the actions' JSON Schemas, printed from the registry."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from worker.actions import schemas
from worker.cli import app
from worker.providers.passcreator.actions import ACTIONS


def test_schema_prints_every_action_with_input_and_output() -> None:
    result = CliRunner().invoke(app, ["tools", "schema"])
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed == schemas(ACTIONS)
    assert list(printed) == list(ACTIONS)
    assert set(printed["create_pass"]) == {"description", "writes", "input", "output"}


def test_schema_of_one_action() -> None:
    result = CliRunner().invoke(app, ["tools", "schema", "--action", "get_pass"])
    printed = json.loads(result.stdout)
    assert list(printed) == ["get_pass"]
    assert printed["get_pass"]["input"]["required"] == ["identifier"]
    assert printed["get_pass"]["writes"] is False


def test_an_unknown_action_exits_2() -> None:
    result = CliRunner().invoke(app, ["tools", "schema", "--action", "make_pass"])
    assert result.exit_code == 2
    assert result.stderr.startswith("passsync: unknown action 'make_pass'; known: pass_exists, ")
    assert result.stdout == ""


def test_list_shows_read_and_write_actions() -> None:
    result = CliRunner().invoke(app, ["tools", "list"])
    assert result.exit_code == 0
    assert "14 actions" in result.stdout
    assert "delete_template" in result.stdout
