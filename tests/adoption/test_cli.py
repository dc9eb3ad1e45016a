"""`passsync adoption`: the funnel as a table, JSON and CSV."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.adoption.scenario import EXPECTED, seed
from worker.cli import app
from worker.db import Database

pytestmark = pytest.mark.usefixtures("cli_admin_token")


@pytest.fixture
def seeded(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    seed(db)
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    return db


def test_json_shows_the_funnel(seeded: Database) -> None:
    result = CliRunner().invoke(app, ["adoption", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert {s["step"]: s["count"] for s in body["steps"]} == EXPECTED
    assert body["top_locations"] == [
        {"location": "Berlin Mitte", "scans": 3},
        {"location": "Hamburg", "scans": 1},
    ]


def test_csv_and_filters(seeded: Database) -> None:
    result = CliRunner().invoke(app, ["adoption", "--csv", "--pass-key", "loyalty"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "step,passes,rate,rate_of",
        "known,3,,",
        "issued,3,1.0,known",
        "downloaded,3,1.0,issued",
        "installed,2,0.6667,downloaded",
        "used,2,0.6667,issued",
        "removed,1,0.3333,downloaded",
    ]


def test_the_table_and_a_bad_date(seeded: Database) -> None:
    table = CliRunner().invoke(app, ["adoption"])
    bad = CliRunner().invoke(app, ["adoption", "--since", "yesterday"])
    assert table.exit_code == 0 and "downloaded" in table.output and "75% of issued" in table.output
    assert "median time to install: 30.0 min" in table.output
    assert bad.exit_code == 2


def test_subscribe_without_a_public_url_refuses(seeded: Database) -> None:
    result = CliRunner().invoke(app, ["adoption", "subscribe"])
    assert result.exit_code == 2
    assert "callbacks.public_url" in result.output


def test_an_empty_funnel_says_what_to_set_up(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no passes and no callbacks set up (a fresh `passsync run`)
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    # When the funnel is shown
    table = CliRunner().invoke(app, ["adoption"])
    # Then it says where events go and how downloads get reported
    assert table.exit_code == 0, table.output
    assert "no passes yet: send signed customer events to POST /webhooks/<source>" in table.stdout
    assert "then run `passsync adoption subscribe`" in table.stdout
    # And a filter that selects nothing, or JSON, gets no hint
    filtered = CliRunner().invoke(app, ["adoption", "--pass-key", "nope"])
    assert "no passes yet" not in filtered.stdout and "callbacks" not in filtered.stdout
    assert json.loads(CliRunner().invoke(app, ["adoption", "--json"]).stdout)["steps"]


def test_a_funnel_with_downloads_gives_no_hint(seeded: Database) -> None:
    table = CliRunner().invoke(app, ["adoption"])
    assert "no passes yet" not in table.stdout and "need provider callbacks" not in table.stdout
