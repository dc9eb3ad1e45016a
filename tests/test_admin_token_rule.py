"""One admin-token rule for every command that changes something (issue 18, item 5).

Before it, only `passsync campaign` asked for a token: `events replay`, `outbox redeliver`,
`passes delete` and `audit purge` needed nothing. Each command that changes state is run
here without PASSSYNC_TOKEN, with a wrong one and with a read-only one: each refuses with the
same one line and exit 2 before it touches anything (the database URL points where nothing
listens, and no provider is reachable, so a command that skipped the check would fail
differently). Commands that only read run without any token.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.cli import app
from worker.migrate import upgrade
from worker.stack import free_port

WRITE = "admin-rule-write-token-0123456789"
READ = "admin-rule-read-token-0123456789"

CHANGES = [
    ["events", "replay", "1"],
    ["events", "replay", "--dead"],
    ["outbox", "redeliver", "1"],
    ["audit", "purge"],
    ["retention", "run"],
    ["accounts", "rotate"],
    ["accounts", "rotate", "--no-check"],
    ["adoption", "subscribe"],
    ["campaign", "create", "{csv}"],
    ["campaign", "start", "1"],
    ["campaign", "pause", "1"],
    ["campaign", "resume", "1"],
    ["campaign", "cancel", "1"],
    ["passes", "create", "--template", "tpl-1", "--field", "a=b"],
    ["passes", "update", "p-1", "--field", "a=b"],
    ["passes", "delete", "p-1", "--yes"],
    ["passes", "delete", "p-1"],  # refused before it asks for confirmation
    ["passes", "void", "p-1"],
    ["templates", "create", "--name", "T"],
    ["templates", "update", "tpl-1", "--set", "a=b"],
    ["templates", "delete", "tpl-1", "--yes"],
]

READS = [
    ["events", "list"],
    ["outbox", "list"],
    ["scans", "list"],
    ["audit"],
    ["audit", "stats"],
    ["retention", "status"],
    ["campaign", "list"],
    ["adoption"],
]


@pytest.fixture
def tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A write token and a read token configured; PASSSYNC_TOKEN unset; a CSV to import."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PASSSYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SECRET", WRITE)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SCOPES", '["read", "write"]')
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__VIEWER__SECRET", READ)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__VIEWER__SCOPES", '["read"]')
    monkeypatch.delenv("PASSSYNC_TOKEN", raising=False)
    csv_file = tmp_path / "spring.csv"
    csv_file.write_text("customer_id,tier\nc1,gold\n")
    return csv_file


REFUSALS = {
    None: (
        "passsync: this command changes state and needs an admin token: export PASSSYNC_TOKEN "
        "with the secret of a token with the write scope (one of: ops, viewer)"
    ),
    "not-a-token": "passsync: wrong token: PASSSYNC_TOKEN matches none of the admin tokens",
    READ: "passsync: token viewer lacks the write scope",
}


@pytest.mark.parametrize("command", CHANGES, ids=" ".join)
@pytest.mark.parametrize("presented", list(REFUSALS), ids=["none", "wrong", "read-only"])
def test_every_change_needs_a_write_token_and_says_which_problem_it_is(
    tokens: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], presented: str | None
) -> None:
    # Given a database and a provider that nothing answers for
    nowhere = f"postgresql+psycopg://passsync@127.0.0.1:{free_port()}/passsync"
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", nowhere)
    if presented is not None:
        monkeypatch.setenv("PASSSYNC_TOKEN", presented)
    # When the command runs without a token, with a wrong one, with a read-only one
    args = [str(tokens) if a == "{csv}" else a for a in command]
    result = CliRunner().invoke(app, args)
    # Then it refuses with one line naming the problem, exit 2, before touching anything
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    assert result.stderr.splitlines() == [REFUSALS[presented]]


@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_commands_that_only_read_need_no_token(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'read.db'}"
    upgrade(url)
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", url)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "token" not in result.output


def test_with_the_write_token_the_change_goes_ahead(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'write.db'}"
    upgrade(url)
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", url)
    monkeypatch.setenv("PASSSYNC_TOKEN", WRITE)
    result = CliRunner().invoke(app, ["audit", "purge"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("deleted 0 audit rows older than ")
