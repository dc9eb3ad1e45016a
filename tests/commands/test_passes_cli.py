"""`passsync passes ...` in-process against the sandbox: output shapes, audit rows, error exits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.actions.fixtures import (
    LOYALTY,
    Provider,
    unmigrated_url,
)
from worker.audit import Actor
from worker.cli import app

pytestmark = pytest.mark.usefixtures("cli_admin_token")

USER = f"cli:{Actor.cli().id}"
PASS_KEYS = {
    "pass_id",
    "user_provided_id",
    "template_id",
    "voided",
    "fields",
    "download_page",
    "iphone_uri",
    "android_uri",
    "barcode_value",
    "serial_number",
    "auto_generated_id",
}


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def create(upid: str, *fields: str) -> dict[str, Any]:
    options = [part for field in fields for part in ("--field", field)]
    made: dict[str, Any] = run_json(
        "passes", "create", "--template", LOYALTY, "--user-provided-id", upid, *options
    )
    return made


def test_create_prints_the_pass_and_is_audited_as_the_cli_user(provider: Provider) -> None:
    # when
    made = create("u1", "firstName=Ada", "tier=gold")
    # then
    assert set(made) == PASS_KEYS
    assert (made["user_provided_id"], made["template_id"]) == ("u1", LOYALTY)
    assert made["fields"] == {"firstName": "Ada", "tier": "gold"}
    stored = provider.sandbox.passes()
    assert [p["identifier"] for p in stored] == [made["pass_id"]]
    assert provider.audit() == [("create_pass", USER, "ok", "u1")]


def test_get_exists_and_the_three_listings(provider: Provider) -> None:
    # given
    ada = create("u1", "firstName=Ada", "tier=gold")["pass_id"]
    bob = create("u2", "firstName=Bob", "tier=silver")["pass_id"]
    # when / then
    got = run_json("passes", "get", "u1")
    assert (got["pass_id"], got["fields"]["firstName"]) == (ada, "Ada")
    assert run_json("passes", "exists", ada, "--by", "pass_id") == {
        "exists": True,
        "identifier": ada,
        "by": "pass_id",
        "pass_id": ada,
        "user_provided_id": "u1",
        "voided": False,
    }
    listed = run_json("passes", "list", "--limit", "1")
    assert (listed["count"], listed["limit_reached"]) == (1, True)
    assert [row["pass_id"] for row in listed["passes"]] == [bob]
    found = run_json("passes", "search", "Ada", "--template", LOYALTY)
    assert [row["pass_id"] for row in found["passes"]] == [ada]
    queried = run_json("passes", "query", "--where", "tier equals silver")
    assert [row["pass_id"] for row in queried["passes"]] == [bob]
    assert [entry[0] for entry in provider.audit()[2:]] == [
        "get_pass",
        "pass_exists",
        "list_passes",
        "search_passes",
        "query_passes",
    ]
    assert {entry[1] for entry in provider.audit()} == {USER}


def test_query_with_or_groups_given_as_json(provider: Provider) -> None:
    ada = create("u1", "tier=gold")["pass_id"]
    create("u2", "tier=silver")
    cyd = create("u3", "tier=bronze")["pass_id"]
    groups = [
        [{"field": "tier", "operator": "equals", "value": "gold"}],
        [{"field": "userProvidedId", "operator": "equals", "value": "u3"}],
    ]
    found = run_json("passes", "query", "--groups", json.dumps(groups))
    assert sorted(row["pass_id"] for row in found["passes"]) == sorted([ada, cyd])


def test_tables_are_the_default_output(provider: Provider) -> None:
    made = create("u1", "firstName=Ada")
    listed = run("passes", "list")
    assert listed.exit_code == 0
    assert "1 passes, newest first" in listed.stdout
    assert made["pass_id"] in listed.stdout
    got = run("passes", "get", "u1")
    assert "firstName" in got.stdout
    assert got.stdout.lstrip().startswith("┌")


def test_update_merges_and_replace_drops_the_rest(provider: Provider) -> None:
    pass_id = create("u1", "firstName=Ada", "points=1")["pass_id"]
    merged = run_json("passes", "update", pass_id, "--fields-json", '{"points": 5}')
    assert merged["fields"] == {"points": 5}
    assert provider.sandbox.passes()[0]["fields"] == {
        "firstName": "Ada",
        "points": 5,
    }
    run_json("passes", "update", pass_id, "--field", "points=6", "--replace")
    assert provider.sandbox.passes()[0]["fields"] == {"points": "6"}


def test_void_and_unvoid(provider: Provider) -> None:
    pass_id = create("u1")["pass_id"]
    assert run_json("passes", "void", pass_id)["voided"] is True
    assert provider.sandbox.passes()[0]["voided"] is True
    assert run_json("passes", "void", pass_id, "--unvoid")["voided"] is False
    assert provider.sandbox.passes()[0]["voided"] is False
    assert [entry[0] for entry in provider.audit()[1:]] == ["void_pass", "unvoid_pass"]


def test_delete_asks_first_and_a_no_sends_nothing(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    pass_id = create("u1")["pass_id"]
    # when: no terminal to ask on
    headless = run("passes", "delete", pass_id, stdin="")
    # then: one line, exit 2, nothing sent
    assert headless.exit_code == 2
    assert headless.stderr == (
        f"passsync: Delete pass {pass_id}: asks for confirmation and there is no terminal:"
        " add --yes\n"
    )
    # when: the person answers no at a terminal
    monkeypatch.setattr("worker.commands.actions_cli._has_terminal", lambda: True)
    refused = run("passes", "delete", pass_id, stdin="n\n")
    # then
    assert refused.exit_code == 1
    assert refused.stderr == "passsync: aborted, nothing was sent\n"
    assert [p["deleted"] for p in provider.sandbox.passes()] == [False]
    # when: --yes
    assert run_json("passes", "delete", pass_id, "--yes") == {"pass_id": pass_id, "deleted": True}
    # then
    assert [p["deleted"] for p in provider.sandbox.passes()] == [True]
    assert [entry[:3] for entry in provider.audit()] == [
        ("create_pass", USER, "ok"),
        ("delete_pass", USER, "ok"),
    ]


def test_a_missing_pass_is_exit_1_with_one_line(provider: Provider) -> None:
    gone = run("passes", "get", "nobody")
    assert gone.exit_code == 1
    assert gone.stderr == "passsync: get_pass: not found (404)\n"
    absent = run("passes", "exists", "nobody", "--json")
    assert absent.exit_code == 1
    assert json.loads(absent.stdout)["exists"] is False
    assert [entry[2] for entry in provider.audit()] == ["not_found", "not_found"]


def test_an_already_used_user_provided_id_is_refused(provider: Provider) -> None:
    create("u1")
    again = run("passes", "create", "--template", LOYALTY, "--user-provided-id", "u1")
    assert again.exit_code == 1
    assert again.stderr.startswith("passsync: create_pass: userProvidedId already used")
    assert len(provider.sandbox.passes()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("create", "--template", " "),
            "invalid arguments for create_pass: template_id: must not be blank",
        ),
        (
            ("create", "--template", LOYALTY, "--fields-json", '{"templateId": "x"}'),
            "invalid arguments for create_pass: fields: templateId cannot be set here",
        ),
        (("create", "--template", LOYALTY, "--field", "tier"), "--field: expected KEY=VALUE"),
        (
            ("create", "--template", LOYALTY, "--field", "a=1", "--fields-json", "{}"),
            "give --field or --fields-json, not both",
        ),
        (("create", "--template", LOYALTY, "--fields-json", "[1]"), "--fields-json: must be a"),
        (("update", "p1"), "invalid arguments for update_pass: fields: Value should have"),
        (("list", "--limit", "0"), "invalid arguments for list_passes: limit: Input should be"),
        (("query", "--where", "tier"), "--where: expected 'FIELD OPERATOR [VALUE]'"),
        (("query", "--where", "tier like gold"), "invalid arguments for query_passes: groups.0.0"),
        (("query",), "invalid arguments for query_passes: arguments: give groups"),
        (("exists", "u1", "--by", "email"), None),
    ],
)
def test_bad_input_exits_2_with_one_line_and_sends_nothing(
    provider: Provider, args: tuple[str, ...], message: str | None
) -> None:
    # when
    result = run("passes", *args)
    # then
    assert result.exit_code == 2
    if message is not None:  # typer's own usage errors have their own format
        assert result.stderr.startswith(f"passsync: {message}")
        assert result.stderr.count("\n") == 1
    assert provider.sandbox.stats()["calls"] == {}
    assert provider.audit() == []


def test_without_an_api_key_the_message_says_what_to_do(
    provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY")
    # (a base URL without a key is a configuration error of its own: tests/test_config_environment)
    monkeypatch.delenv("PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL", raising=False)
    result = run("passes", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "passsync: no credentials for account 'passcreator' (Passcreator): set "
        "PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY"
    )
    assert "`passsync sandbox --account passcreator`" in result.stderr
    assert provider.sandbox.stats()["calls"] == {}


def test_without_the_audit_table_nothing_is_sent(
    provider: Provider, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", unmigrated_url(tmp_path))
    result = run("passes", "create", "--template", LOYALTY)
    assert result.exit_code == 2
    assert result.stderr == (
        "passsync: the audit table audit_log is missing (every call is audited): "
        "run `passsync db upgrade` first\n"
    )
    assert provider.sandbox.stats()["calls"] == {}
