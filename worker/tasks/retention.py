"""Retention task: beat starts a purge every retention.interval_seconds (bulk queue); a run
that used up its time (retention.max_seconds) with rows left publishes the next one."""

from __future__ import annotations

import logging

from worker.retention.purge import run_retention
from worker.tasks.app import BULK_QUEUE, celery_app
from worker.tasks.runtime import get_runtime

log = logging.getLogger("passsync.tasks.retention")


@celery_app.task(name="passsync.purge_retention", acks_late=True)
def purge_retention() -> str:
    """Delete finished rows past their windows, in short batches (a no-op unless
    retention.enabled)."""
    runtime = get_runtime()
    settings = runtime.settings.retention
    if not settings.enabled:
        return "disabled"
    report = run_retention(runtime.db, settings)
    if report.purged:
        counts = ", ".join(f"{t.table}={t.purged}" for t in report.tables if t.purged)
        log.info("retention purged %d rows (%s)", report.purged, counts)
    if not report.done:
        # Another short run rather than one long task: the pool process is freed in between.
        purge_retention.apply_async(queue=BULK_QUEUE, countdown=settings.pause_seconds)
    return "more" if not report.done else f"purged={report.purged}"
