"""Beat republishes unfinished scans and runs reconciliation at the configured intervals."""

from __future__ import annotations

from collections.abc import Callable

from worker.config import Settings
from worker.tasks.app import celery_app, configure


def test_beat_schedules_the_scan_sweep_and_reconciliation(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        broker_url="redis://127.0.0.1:6379/15",
        sync={"sweep_interval_seconds": 15},
        reconcile={"interval_seconds": 900},
    )
    configure(settings)
    schedule = celery_app.conf.beat_schedule
    assert schedule["sweep-scans"] == {
        "task": "passsync.sweep_scans",
        "schedule": 15.0,
        "options": {"queue": "realtime", "expires": 15.0},
    }
    assert schedule["reconcile-passes"] == {
        "task": "passsync.reconcile",
        "schedule": 900.0,
        "options": {"queue": "bulk", "expires": 900.0},
    }
    # And workers load the modules that define these tasks
    assert {"worker.tasks.scans", "worker.tasks.reconcile"} <= set(celery_app.conf.include)
