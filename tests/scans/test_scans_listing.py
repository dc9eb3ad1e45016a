"""Scans can be inspected: GET /api/scans (filters, paging), `passsync scans list|show`, each
scan with its effect and outcome (issue 18, item 6)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.api.conftest import SECRET, BrokerPing, RecordingEnqueue
from tests.scans.conftest import USAGE, post_scans, run_published, scan, seed_pass
from worker.api.app import create_app
from worker.cli import app as cli_app
from worker.config import Settings
from worker.db import Database
from worker.providers.memory import MemoryProvider

TOKEN = "scans-read-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        sources={"pos": {"secret": SECRET}},
        usage=USAGE,
        admin_tokens={"viewer": {"scopes": ["read"], "secret": TOKEN}},
    )


@pytest.fixture
def client(settings: Settings, db: Database, published: RecordingEnqueue) -> Iterator[TestClient]:
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing(), enqueue_scans=published)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def two_scans(
    client: TestClient,
    db: Database,
    settings: Settings,
    provider: MemoryProvider,
    published: RecordingEnqueue,
) -> None:
    """A coupon scanned twice (accepted, then rejected), and one unknown barcode."""
    seed_pass(db, provider, "cus_1", "welcome")
    where = {"customer_id": "cus_1", "pass_key": "welcome"}
    post_scans(client, scan("s1", location="Berlin Mitte", **where))
    post_scans(client, scan("s2", location="Hamburg", **where))
    post_scans(client, scan("s3", barcode="nobody", location="Hamburg"))
    assert run_published(db, settings, provider, published) == ["accepted", "rejected", "unknown"]


@pytest.mark.usefixtures("two_scans")
def test_api_lists_scans_with_effect_and_outcome_filters_and_pages(client: TestClient) -> None:
    # Without a token: refused
    assert client.get("/api/scans").status_code == 401
    # All of them, newest first, each with its outcome
    listed = client.get("/api/scans", headers=AUTH).json()
    assert [(s["scan_id"], s["status"], s["outcome"]) for s in listed["scans"]] == [
        ("s3", "unknown", "unknown: no known pass matches this scan"),
        ("s2", "rejected", "rejected: coupon already redeemed"),
        ("s1", "accepted", "applied: void the pass; push 'Thanks for visiting Berlin Mitte!'"),
    ]
    assert listed["scans"][2]["effect"]["void"] is True
    # Filters narrow
    rejected = client.get("/api/scans?status=rejected", headers=AUTH).json()["scans"]
    assert [s["scan_id"] for s in rejected] == ["s2"]
    hamburg = client.get("/api/scans?location=Hamburg&customer_id=cus_1", headers=AUTH).json()
    assert [s["scan_id"] for s in hamburg["scans"]] == ["s2"]
    assert client.get("/api/scans?source=other", headers=AUTH).json()["scans"] == []
    # Paging
    second = client.get("/api/scans?limit=1&offset=1", headers=AUTH).json()
    assert ([s["scan_id"] for s in second["scans"]], second["limit"], second["offset"]) == (
        ["s2"],
        1,
        1,
    )
    # One scan, and an unknown id
    one = client.get(f"/api/scans/{listed['scans'][2]['id']}", headers=AUTH).json()
    assert (one["scan_id"], one["location"], one["attributes"]) == ("s1", "Berlin Mitte", {})
    assert client.get("/api/scans/999999", headers=AUTH).status_code == 404
    assert client.get("/api/scans?status=bogus", headers=AUTH).status_code == 422


@pytest.mark.usefixtures("two_scans")
def test_cli_lists_and_shows_scans(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["scans", "list", "--json", "--status", "accepted"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)["scans"]
    assert [(r["scan_id"], r["outcome"]) for r in rows] == [
        ("s1", "applied: void the pass; push 'Thanks for visiting Berlin Mitte!'")
    ]
    table = runner.invoke(cli_app, ["scans", "list"])
    assert table.exit_code == 0 and "rejected: coupon already redeemed" in table.stdout
    shown = runner.invoke(cli_app, ["scans", "show", str(rows[0]["id"])])
    assert json.loads(shown.stdout)["effect"]["void"] is True
    missing = runner.invoke(cli_app, ["scans", "show", "999999"])
    assert (missing.exit_code, missing.stderr) == (1, "no scan with id 999999\n")


@pytest.fixture
def three_times(client: TestClient) -> None:
    """Scans at 09:00, 10:00 and 11:00 UTC (10:00 given with a +02:00 offset)."""
    post_scans(client, scan("t9", barcode="b9", scanned_at="2026-11-20T09:00:00+00:00"))
    post_scans(client, scan("t10", barcode="b10", scanned_at="2026-11-20T12:00:00+02:00"))
    post_scans(client, scan("t11", barcode="b11", scanned_at="2026-11-20T11:00:00Z"))


@pytest.mark.usefixtures("three_times")
def test_since_and_until_narrow_by_scan_time_in_any_offset(client: TestClient) -> None:
    def ids(query: str) -> list[str]:
        answer = client.get(f"/api/scans?{query}", headers=AUTH)
        assert answer.status_code == 200, answer.text
        return [s["scan_id"] for s in answer.json()["scans"]]

    # since is inclusive, until exclusive; offsets are compared as instants
    assert ids("since=2026-11-20T10:00:00Z") == ["t11", "t10"]
    assert ids("until=2026-11-20T10:00:00Z") == ["t9"]
    assert ids("since=2026-11-20T11:00:00%2B01:00&until=2026-11-20T11:00:00Z") == ["t10"]
    assert client.get("/api/scans?since=yesterday", headers=AUTH).status_code == 422


@pytest.mark.usefixtures("three_times")
def test_cli_since_and_until_read_a_naive_time_as_utc(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    runner = CliRunner()
    window = ["--since", "2026-11-20T09:30:00", "--until", "2026-11-20T10:30:00"]
    listed = runner.invoke(cli_app, ["scans", "list", "--json", *window])
    assert listed.exit_code == 0, listed.output
    assert [r["scan_id"] for r in json.loads(listed.stdout)["scans"]] == ["t10"]
    bad = runner.invoke(cli_app, ["scans", "list", "--until", "soon"])
    assert bad.exit_code == 2 and "not an ISO 8601 time" in bad.output
