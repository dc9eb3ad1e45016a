"""`passsync audit` (table and JSON, with filters and paging) and `passsync audit purge`."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from tests.audit.helpers import audit_rows, entry, seed
from worker.cli import app
from worker.db import Database, utcnow

pytestmark = pytest.mark.usefixtures("cli_admin_token")


@pytest.fixture
def cli_db(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    return db


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", *args])
    return result.exit_code, result.stdout


def test_json_output_filters_and_pages(cli_db: Database) -> None:
    # Given three rows for event 1 and one for event 2
    seed(cli_db, [entry(attempt=n) for n in (1, 2, 3)] + [entry(actor_id="2")])
    # When the first page of event 1's rows is asked for, then the next
    code, out = run("--json", "--actor", "event:1", "--limit", "2")
    page = json.loads(out)
    code2, out2 = run("--json", "--actor", "event:1", "--limit", "2", "--before", "2")
    # Then the pages hold ids 3, 2 and then 1, with the full row shape
    assert (code, code2) == (0, 0)
    assert ([e["id"] for e in page["entries"]], page["next_before"]) == ([3, 2], 2)
    assert (json.loads(out2)["entries"][0]["id"], json.loads(out2)["next_before"]) == (1, None)
    assert page["entries"][0] == {
        "id": 3,
        "at": "2026-11-01T12:00:00+00:00",
        "provider": "passcreator",
        "action": "update_pass",
        "method": "PATCH",
        "path": "/api/v3/pass/{id}",
        "pass_ref": "pass-1",
        "status": 200,
        "duration_ms": 10.0,
        "attempt": 3,
        "outcome": "ok",
        "actor_kind": "event",
        "actor_id": "1",
    }


def test_time_window_and_action_filters(cli_db: Database) -> None:
    seed(cli_db, [entry(), entry(action="get_pass", at=entry()["at"] + timedelta(hours=1))])
    code, out = run("--json", "--since", "2026-11-01T12:30:00", "--action", "get_pass")
    assert (code, [e["id"] for e in json.loads(out)["entries"]]) == (0, [2])
    code, out = run("--json", "--until", "2026-11-01T12:30:00+00:00")
    assert (code, [e["id"] for e in json.loads(out)["entries"]]) == (0, [1])


def test_table_output_shows_rows_and_where_older_ones_continue(cli_db: Database) -> None:
    seed(
        cli_db, [entry(outcome="server_error", status=503), entry(actor_kind="cli", actor_id="bob")]
    )
    code, out = run("--limit", "1")
    assert code == 0
    assert "cli:bob" in out and "update_pass" in out and "older rows: --before 2" in out
    assert "server_error" not in out


def test_bad_filters_are_usage_errors_that_read_nothing(cli_db: Database) -> None:
    assert run("--actor", "robot:1")[0] == 2
    assert run("--since", "yesterday")[0] == 2


def test_purge_uses_the_retention_setting_or_days(cli_db: Database) -> None:
    # Given rows 100, 40 and 0 days old
    now = utcnow()
    seed(cli_db, [entry(at=now - timedelta(days=d), attempt=d) for d in (100, 40, 0)])
    # When purged with the default 90 days
    first = CliRunner().invoke(app, ["audit", "purge"])
    after_default = [r.attempt for r in audit_rows(cli_db)]
    # And then with --days 30
    second = CliRunner().invoke(app, ["audit", "purge", "--days", "30"])
    # Then each run removed exactly the rows older than its cutoff
    assert (first.exit_code, after_default) == (0, [40, 0])
    assert first.stdout.startswith("deleted 1 audit rows older than")
    assert second.exit_code == 0 and second.stdout.startswith("deleted 1 audit rows older than")
    assert [r.attempt for r in audit_rows(cli_db)] == [0]


def test_purge_with_zero_retention_keeps_everything(
    cli_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSSYNC_AUDIT__RETENTION_DAYS", "0")
    seed(cli_db, [entry(at=utcnow() - timedelta(days=1000))])
    result = CliRunner().invoke(app, ["audit", "purge"])
    assert result.exit_code == 0
    assert result.stdout == "audit.retention_days is 0 (keep forever): nothing purged\n"
    assert len(audit_rows(cli_db)) == 1
