"""Thin scan tasks: apply one scan as usage; republish scans a worker never finished."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from worker.audit import Actor
from worker.db import utcnow
from worker.providers.errors import RateLimitedError, TransientError
from worker.scans.ledger import pending_scan_ids
from worker.scans.models import ScanStatus
from worker.scans.usage import ScanNotFoundError, UsageContext, process_scan
from worker.sync.engine import PassBusyError
from worker.tasks.app import REALTIME_QUEUE, celery_app
from worker.tasks.jobs import WaitingForPass, busy_countdown, retry_countdown
from worker.tasks.runtime import get_runtime

log = logging.getLogger("passsync.tasks.scans")

MAX_SCAN_ATTEMPTS = 8


@celery_app.task(
    name="passsync.process_scan", bind=True, acks_late=True, reject_on_worker_lost=True
)
def process_scan_task(self: Any, scan_id: int, attempt: int = 0, waiting: bool = False) -> str:
    """Apply one scan under the pass's claim. A claimed pass is waited for like an event
    waits (logged once per scan, no attempt used); a transient provider failure retries with
    bounded backoff (a 429 uses no attempt) and the retry repeats the stored effect."""
    runtime = get_runtime()
    ctx = UsageContext(
        runtime.settings, runtime.sync.provider, runtime.sync.on, leases=runtime.sync.leases
    )
    try:
        with runtime.audited(Actor("system", f"scan:{scan_id}")), runtime.db.session() as session:
            result = process_scan(session, scan_id, ctx)
    except ScanNotFoundError:
        log.warning("scan %s is not in the ledger; dropping the message", scan_id)
        return "missing"
    except PassBusyError as exc:
        if not waiting:
            log.info("scan %s waits: %s", scan_id, exc)
        raise self.retry(
            countdown=busy_countdown(exc.retry_after),
            max_retries=None,
            kwargs={"attempt": attempt, "waiting": True},
            exc=WaitingForPass(),
        ) from None
    except TransientError as exc:
        used = attempt + (0 if isinstance(exc, RateLimitedError) else 1)
        if used >= MAX_SCAN_ATTEMPTS:
            log.warning("scan %s still applying after %d attempts: %s", scan_id, used, exc)
            return "gave-up"  # still applying: the sweep republishes it later
        sync = runtime.settings.sync
        countdown = retry_countdown(
            max(used, 1),
            exc,
            base=sync.retry_base_seconds,
            cap=sync.retry_max_seconds,
            visibility_timeout=runtime.settings.celery.visibility_timeout_seconds,
        )
        raise self.retry(
            countdown=countdown, max_retries=None, kwargs={"attempt": used, "waiting": False}
        ) from None
    if result.status == ScanStatus.REFUSED:
        log.warning("scan %s refused: %s", scan_id, result.reason)
    return "duplicate" if result.already_handled else str(result.status)


def dispatch_scans(ids: list[int]) -> None:
    """The receiver's enqueue for scans: one task per scan id over one connection."""
    with celery_app.producer_or_acquire() as producer:
        for scan_id in ids:
            process_scan_task.apply_async(args=[scan_id], queue=REALTIME_QUEUE, producer=producer)


@celery_app.task(name="passsync.sweep_scans", acks_late=True)
def sweep_scans() -> int:
    """Republish scans that are still pending or applying (lost or never published)."""
    runtime = get_runtime()
    # Only scans older than the stale age: a fresh one is most likely still in a worker.
    before = utcnow() - timedelta(seconds=runtime.settings.sync.sweep_stale_after_seconds)
    with runtime.db.session() as session:
        ids = pending_scan_ids(session, before)
    if ids:
        dispatch_scans(ids)
    return len(ids)
