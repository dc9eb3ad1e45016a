"""Live success rates per account and action: the query, `passsync audit stats`, the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from tests.audit.helpers import entry, seed
from worker.audit.stats import call_stats, parse_since
from worker.cli import app
from worker.db import Database, utcnow

NOW = utcnow()


def recent(**overrides: object) -> dict[str, object]:
    return entry(at=NOW - timedelta(minutes=5), **overrides)


def seed_mix(db: Database) -> None:
    # account a: update_pass 8 ok (10..80 ms), 1 timeout, 1 server_error; create_pass 1
    # already_exists (a success: the pass is adopted); account b: one 429
    rows = [recent(provider="a", duration_ms=10.0 * n) for n in range(1, 9)]
    rows += [
        recent(provider="a", outcome="timeout", status=None, duration_ms=5000.0),
        recent(provider="a", outcome="server_error", status=503, duration_ms=90.0),
        recent(provider="a", action="create_pass", outcome="already_exists", status=409),
        recent(provider="b", outcome="rate_limited", status=429, duration_ms=4.0),
        # older than the window: never counted
        entry(provider="a", at=NOW - timedelta(days=3), outcome="timeout"),
    ]
    seed(db, rows)


def test_rates_error_classes_and_percentiles_per_account_and_action(db: Database) -> None:
    seed_mix(db)
    with db.session() as session:
        rows = [r.as_dict() for r in call_stats(session, since=NOW - timedelta(hours=24))]
    assert [(r["account"], r["action"], r["calls"]) for r in rows] == [
        ("a", "create_pass", 1),
        ("a", "update_pass", 10),
        ("b", "update_pass", 1),
    ]
    create, update, limited = rows
    assert (create["success_rate"], create["errors"]) == (1.0, {})
    assert update["success_rate"] == 0.8
    assert update["errors"] == {"server_error": 1, "timeout": 1}
    # durations 10..80, 90, 5000: p50 between the 5th and 6th (50, 60), p99 near the top
    assert update["p50_ms"] == 55.0
    assert update["p99_ms"] == pytest.approx(90 + (5000 - 90) * 0.91, abs=0.01)
    assert (limited["success_rate"], limited["errors"]) == (0.0, {"rate_limited": 1})


def test_one_account_and_an_empty_window(db: Database) -> None:
    seed_mix(db)
    with db.session() as session:
        only_b = call_stats(session, since=NOW - timedelta(hours=1), account="b")
        none = call_stats(session, since=NOW + timedelta(minutes=1))
    assert [(r.account, r.calls) for r in only_b] == [("b", 1)]
    assert none == []


def test_since_accepts_durations_and_iso_times() -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2026-10-01T00:00:00") == datetime(2026, 10, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("yesterday")


def test_the_cli_prints_json_and_a_table(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    seed_mix(db)
    result = CliRunner().invoke(app, ["audit", "stats", "--json", "--account", "a"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [(r["action"], r["calls"], r["success_rate"]) for r in payload["actions"]] == [
        ("create_pass", 1, 1.0),
        ("update_pass", 10, 0.8),
    ]
    table = CliRunner().invoke(app, ["audit", "stats", "--since", "1h"])
    assert table.exit_code == 0
    assert "update_pass" in table.stdout and "80.00%" in table.stdout
    bad = CliRunner().invoke(app, ["audit", "stats", "--since", "soon"])
    assert bad.exit_code == 2
