"""Beat runs the purge (a task on the bulk queue that hands the rest to its next run); the
`passsync retention` commands show and run it; migration 0008 adds its indexes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, func, inspect, select
from typer.testing import CliRunner

from tests.retention import seed
from worker.cli import app
from worker.config import Settings
from worker.db import Database, utcnow
from worker.inbound.models import InboundEvent
from worker.migrate import alembic_config, upgrade
from worker.tasks import retention as retention_task
from worker.tasks.app import celery_app, configure
from worker.tasks.retention import purge_retention
from worker.tasks.runtime import get_runtime, reset_runtime


def ledger_count(db: Database) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(InboundEvent)) or 0)


@pytest.fixture
def task_env(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY", "retention-test-key")
    reset_runtime()
    yield monkeypatch
    get_runtime().db.dispose()
    reset_runtime()


def old_handled(db: Database, n: int) -> None:
    at = utcnow() - timedelta(days=31)
    for _ in range(n):
        seed.inbound(db, status="handled", received=at, handled=at)


def test_the_task_purges_and_hands_the_rest_to_its_next_run(
    db: Database, task_env: pytest.MonkeyPatch
) -> None:
    # Given three old handled events, one pending, batches of one row, and a clock that
    # moves 7.5 s per read (twice per batch): a 30 s run has time for two batches
    old_handled(db, 3)
    seed.inbound(db, status="pending", received=utcnow() - timedelta(days=400))
    published: list[dict[str, Any]] = []
    task_env.setattr(purge_retention, "apply_async", lambda **kw: published.append(kw))
    task_env.setenv("PASSSYNC_RETENTION__BATCH_SIZE", "1")
    task_env.setenv("PASSSYNC_RETENTION__PAUSE_SECONDS", "0")
    ticks = iter(range(1000))
    task_env.setattr(retention_task, "run_retention", _with_clock(lambda: next(ticks) * 7.5))
    # When beat's run ends with rows left, Then it publishes the next run on the bulk queue
    assert purge_retention() == "more"
    assert ledger_count(db) == 2
    assert published == [{"queue": "bulk", "countdown": 0.0}]
    # And the next run (a real clock) finishes the job and publishes nothing more
    task_env.setattr(retention_task, "run_retention", _with_clock(time.monotonic))
    assert purge_retention() == "purged=1"
    assert ledger_count(db) == 1  # the pending event
    assert len(published) == 1


def _with_clock(clock: Callable[[], float]) -> Callable[..., Any]:
    from worker.retention.purge import run_retention

    def run(*args: Any, **kwargs: Any) -> Any:
        return run_retention(*args, clock=clock, **kwargs)

    return run


def test_the_task_does_nothing_when_retention_is_off(
    db: Database, task_env: pytest.MonkeyPatch
) -> None:
    old_handled(db, 2)
    task_env.setenv("PASSSYNC_RETENTION__ENABLED", "false")
    assert purge_retention() == "disabled"
    assert ledger_count(db) == 2


def test_the_task_reports_what_it_purged(db: Database, task_env: pytest.MonkeyPatch) -> None:
    old_handled(db, 2)
    assert purge_retention() == "purged=2"
    assert ledger_count(db) == 0


def test_beat_schedules_the_purge_on_the_bulk_queue(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        broker_url="redis://127.0.0.1:6379/15", retention={"interval_seconds": 900}
    )
    configure(settings)
    assert celery_app.conf.beat_schedule["purge-retention"] == {
        "task": "passsync.purge_retention",
        "schedule": 900.0,
        "options": {"queue": "bulk", "expires": 900.0},
    }
    assert "passsync.purge_retention" in celery_app.tasks


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli_db(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    return db


def test_status_shows_windows_and_what_is_purgeable(cli_db: Database) -> None:
    old_handled(cli_db, 2)
    result = CliRunner().invoke(app, ["retention", "status", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    inbound = next(t for t in found["tables"] if t["table"] == "inbound")
    assert found["enabled"] is True
    assert (inbound["days"], inbound["rows"], inbound["purgeable"]) == (30, 2, 2)
    assert ledger_count(cli_db) == 2


def test_run_needs_an_admin_token_and_changes_nothing_without_one(
    cli_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_handled(cli_db, 2)
    result = CliRunner().invoke(app, ["retention", "run"])
    assert result.exit_code == 2
    assert "admin token" in result.output
    assert ledger_count(cli_db) == 2


@pytest.mark.usefixtures("cli_admin_token")
def test_run_purges_every_table_until_done(cli_db: Database) -> None:
    old_handled(cli_db, 3)
    seed.inbound(cli_db, status="dead", received=utcnow() - timedelta(days=400))
    result = CliRunner().invoke(app, ["retention", "run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["purged"] == 3 and report["done"] is True
    assert [t["table"] for t in report["tables"]] == ["inbound", "outbox", "adoption", "scans"]
    assert ledger_count(cli_db) == 1


@pytest.mark.usefixtures("cli_admin_token")
def test_run_refuses_an_unknown_table(cli_db: Database) -> None:
    old_handled(cli_db, 1)
    result = CliRunner().invoke(app, ["retention", "run", "--table", "ledger"])
    assert result.exit_code == 2
    assert "inbound, outbox, adoption, scans" in result.output
    assert ledger_count(cli_db) == 1


@pytest.mark.usefixtures("cli_admin_token")
def test_run_one_table_says_what_it_did(cli_db: Database) -> None:
    old_handled(cli_db, 1)
    result = CliRunner().invoke(app, ["retention", "run", "--table", "inbound"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("inbound: purged 1 rows finished before ")
    assert ledger_count(cli_db) == 0


# -- migration ---------------------------------------------------------------------------------


def indexes(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {i["name"] for i in inspect(engine).get_indexes(table) if i["name"]}
    finally:
        engine.dispose()


def test_0008_adds_the_retention_indexes_and_takes_them_away(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0007")
    assert "ix_adoption_events_received_at" not in indexes(url, "adoption_events")
    upgrade(url, "0008")
    assert "ix_adoption_events_received_at" in indexes(url, "adoption_events")
    assert "ix_scans_status_received_at" in indexes(url, "scans")
    command.downgrade(alembic_config(url), "0007")
    assert "ix_scans_status_received_at" not in indexes(url, "scans")
