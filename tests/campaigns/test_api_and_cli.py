"""The campaign API and CLI: admin token and scopes, create with bad rows, state changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from worker.api.app import create_app
from worker.campaigns.models import Campaign, CampaignImportError, CampaignRecipient
from worker.cli import app as cli_app
from worker.config import Settings
from worker.db import Database

READ = "campaign-read-token-0123"
WRITE = "campaign-write-token-0123"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(
        database_url=db_url,
        admin_tokens={
            "ops": {"scopes": ["read", "write"], "secret": WRITE},
            "viewer": {"scopes": ["read"], "secret": READ},
        },
    )


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    app = create_app(settings, db, enqueue=lambda ids: None, broker_ping=lambda: None)
    with TestClient(app) as test_client:
        yield test_client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BODY = {
    "name": "spring",
    "template": "Loyalty Card",
    "recipients": [
        {"customer_id": "c1", "attributes": {"tier": "gold"}},
        {"customer_id": ""},
        {"customer": {"id": "c3"}, "data": {"offer": "X"}},
    ],
}


def test_creating_needs_a_write_token_and_stores_nothing_without_one(
    client: TestClient, db: Database
) -> None:
    assert client.post("/api/campaigns", json=BODY).status_code == 401
    assert client.post("/api/campaigns", json=BODY, headers=auth(READ)).status_code == 403
    assert client.get("/api/campaigns", headers=auth("nope")).status_code == 401
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_create_reports_bad_items_by_position_then_start_pause_cancel(
    client: TestClient, db: Database
) -> None:
    # When a campaign is created with one bad item among three
    created = client.post("/api/campaigns", json=BODY, headers=auth(WRITE))
    # Then it is a draft of two recipients, and the bad item is named by position
    assert created.status_code == 201
    body = created.json()
    assert body["imported"] == 2
    assert body["import_errors"] == [{"line": 2, "message": "customer_id: Field required"}]
    campaign_id = body["campaign"]["id"]
    assert body["campaign"]["status"] == "draft"
    # And it can be started, paused (read token may look, not change) and cancelled
    start = client.post(f"/api/campaigns/{campaign_id}/start", headers=auth(WRITE))
    assert start.json()["status"] == "running"
    assert client.post(f"/api/campaigns/{campaign_id}/pause", headers=auth(READ)).status_code == 403
    assert (
        client.post(f"/api/campaigns/{campaign_id}/pause", headers=auth(WRITE)).json()["status"]
        == "paused"
    )
    again = client.post(f"/api/campaigns/{campaign_id}/pause", headers=auth(WRITE))
    assert again.status_code == 409
    assert (
        client.post(f"/api/campaigns/{campaign_id}/cancel", headers=auth(WRITE)).json()["cancelled"]
        == 2
    )
    report = client.get(f"/api/campaigns/{campaign_id}/report", headers=auth(READ)).json()
    assert report["status"] == "cancelled"
    assert report["first_import_errors"][0]["line"] == 2
    assert client.get("/api/campaigns/999", headers=auth(READ)).status_code == 404


def test_a_campaign_that_reaches_no_rule_is_refused_and_not_stored(
    client: TestClient, db: Database
) -> None:
    bad = {**BODY, "template": "Nope"}
    answer = client.post("/api/campaigns", json=bad, headers=auth(WRITE))
    assert answer.status_code == 422
    assert "no rule upserts a pass with template 'Nope'" in answer.text
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CampaignRecipient)) == 0


def test_cli_needs_a_token_then_creates_from_a_file_and_reports_bad_lines(
    settings: Settings, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the CLI's settings come from the environment
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SECRET", WRITE)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__VIEWER__SECRET", READ)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SCOPES", '["read", "write"]')
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__VIEWER__SCOPES", '["read"]')
    csv_file = tmp_path / "spring.csv"
    csv_file.write_text("customer_id,tier\nc1,gold\nc2,silver,extra\nc3,bronze\n")
    runner = CliRunner()
    # When it runs without a token, then with a read-only one
    refused = runner.invoke(cli_app, ["campaign", "create", str(csv_file)])
    monkeypatch.setenv("PASSSYNC_TOKEN", READ)
    read_only = runner.invoke(cli_app, ["campaign", "create", str(csv_file)])
    # Then nothing is created
    assert refused.exit_code == 2 and "PASSSYNC_TOKEN" in refused.output
    monkeypatch.setenv("PASSSYNC_TOKEN", "not-a-token")
    wrong = runner.invoke(cli_app, ["campaign", "create", str(csv_file)])
    assert wrong.exit_code == 2
    assert (
        wrong.stderr == "passsync: wrong token: PASSSYNC_TOKEN matches none of the admin tokens\n"
    )
    assert read_only.exit_code == 2 and "lacks the write scope" in read_only.output
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0
    # And with a write token the file is imported, line 3 reported, and it starts
    monkeypatch.setenv("PASSSYNC_TOKEN", WRITE)
    made = runner.invoke(cli_app, ["campaign", "create", str(csv_file), "--start"])
    assert made.exit_code == 0, made.output
    assert "campaign 1: 2 recipients, 1 errors" in made.output
    assert "line 3: expected 2 fields, found 3" in made.output
    status = runner.invoke(cli_app, ["campaign", "status", "1", "--json"])
    assert '"status": "running"' in status.output and '"remaining": 2' in status.output
    assert runner.invoke(cli_app, ["campaign", "pause", "1"]).output.strip() == "campaign 1: paused"


def test_cli_refuses_an_empty_file_and_a_draft_says_how_to_start(
    settings: Settings, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a write token and two files: an empty one and a good one
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SECRET", WRITE)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SCOPES", '["read", "write"]')
    monkeypatch.setenv("PASSSYNC_TOKEN", WRITE)
    empty, header_only, good = (tmp_path / n for n in ("e.csv", "h.csv", "g.csv"))
    empty.write_text("")
    header_only.write_text("customer_id,tier\n")
    good.write_text("customer_id,tier\nc1,gold\n")
    runner = CliRunner()
    # When the empty files are given
    for path, why in ((empty, "the file is empty"), (header_only, "no recipients in the file")):
        refused = runner.invoke(cli_app, ["campaign", "create", str(path)])
        # Then nothing is created, and the one line says why
        assert refused.exit_code == 2
        assert refused.stderr == f"{path}: {why}; no campaign created\n"
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0
    # When the good file is given without --start
    made = runner.invoke(cli_app, ["campaign", "create", str(good)])
    # Then it says the campaign is a draft until started
    assert made.stdout.splitlines() == [
        "campaign 1: 1 recipients, 0 errors",
        "it is a draft: nothing is sent until `passsync campaign start 1`",
    ]
    # And the report is a table, with no Python dicts or (None/s); reading needs no token
    monkeypatch.delenv("PASSSYNC_TOKEN")
    report = runner.invoke(cli_app, ["campaign", "report", "1"])
    assert report.exit_code == 0, report.output
    assert "{" not in report.stdout and "None" not in report.stdout
    assert "│ status" in report.stdout and "draft" in report.stdout
    rows = [" ".join(line.strip("│ ").split()) for line in report.stdout.splitlines()]
    assert "status │ draft" in rows and "time │ not started" in rows
    assert "pending │ 1" in rows and "recipients │ 1" in rows


@pytest.mark.parametrize("start", [False, True], ids=["draft", "--start"])
def test_cli_a_file_with_no_valid_recipient_creates_no_campaign(
    settings: Settings, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: bool
) -> None:
    # Given a file whose every line is an error (an unterminated quote, a missing id)
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SECRET", WRITE)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SCOPES", '["read", "write"]')
    monkeypatch.setenv("PASSSYNC_TOKEN", WRITE)
    bad = tmp_path / "bad.csv"
    bad.write_text('customer_id,tier\n,gold\n"c2,silver\n')
    # When it is imported
    refused = CliRunner().invoke(
        cli_app, ["campaign", "create", str(bad), *(["--start"] if start else [])]
    )
    # Then no campaign (empty, or running with nothing to send) is left behind, and the
    # lines say why
    assert refused.exit_code == 2
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"{bad}: no valid recipient (2 errors); no campaign created",
        "  line 2: customer_id: Field required",
        "  line 3: unterminated quoted field: the quote opened on this line never closes",
    ]
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0
        assert session.scalar(select(func.count()).select_from(CampaignImportError)) == 0
