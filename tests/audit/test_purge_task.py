"""The beat-driven purge: the task deletes expired rows; beat runs it at the set interval."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from tests.audit.helpers import audit_rows, entry, seed
from worker.config import Settings
from worker.db import Database, utcnow
from worker.tasks.app import celery_app, configure
from worker.tasks.jobs import purge_audit
from worker.tasks.runtime import get_runtime, reset_runtime


@pytest.fixture
def task_env(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY", "purge-test-key")
    reset_runtime()
    yield monkeypatch
    get_runtime().db.dispose()
    reset_runtime()


def test_the_task_deletes_rows_past_the_retention(
    db: Database, task_env: pytest.MonkeyPatch
) -> None:
    # Given rows 31 and 29 days old, and a 30-day retention
    task_env.setenv("PASSSYNC_AUDIT__RETENTION_DAYS", "30")
    now = utcnow()
    seed(db, [entry(at=now - timedelta(days=31), attempt=31), entry(at=now - timedelta(days=29))])
    # When the beat task runs, Then only the older row is gone
    assert purge_audit() == 1
    assert [r.attempt for r in audit_rows(db)] == [1]


def test_zero_retention_deletes_nothing(db: Database, task_env: pytest.MonkeyPatch) -> None:
    task_env.setenv("PASSSYNC_AUDIT__RETENTION_DAYS", "0")
    seed(db, [entry(at=utcnow() - timedelta(days=5000))])
    assert purge_audit() == 0
    assert len(audit_rows(db)) == 1


def test_beat_schedules_the_purge_at_the_configured_interval(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        broker_url="redis://127.0.0.1:6379/15", audit={"purge_interval_seconds": 600}
    )
    configure(settings)
    assert celery_app.conf.beat_schedule["purge-audit-log"] == {
        "task": "passsync.purge_audit",
        "schedule": 600.0,
        "options": {"queue": "realtime", "expires": 600.0},
    }
