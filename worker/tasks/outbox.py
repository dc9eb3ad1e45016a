"""Outbox delivery task: fed by beat (outbound.poll_seconds) and kicked after any commit that
emitted an outbound event. Long waits live in SQL (next_attempt_at), never in a countdown."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import signals
from sqlalchemy import event
from sqlalchemy.orm import Session

from worker.outbox.deliver import deliver_due
from worker.outbox.emit import EMITTED_KEY
from worker.outbox.transport import HttpTransport
from worker.tasks.app import REALTIME_QUEUE, celery_app
from worker.tasks.runtime import get_runtime

log = logging.getLogger("passsync.tasks.outbox")

# A kicked task starts this much later, and one process kicks at most once per this window:
# a burst of commits costs one task, and every commit still has a task starting after it.
KICK_DELAY_SECONDS = 0.2

_lock = threading.Lock()
_transports: dict[int, HttpTransport] = {}
_last_kick = [0.0]
_kicks_enabled = [False]


@celery_app.task(name="passsync.deliver_outbox", acks_late=True)
def deliver_outbox() -> str:
    """Fan out new outbound events and deliver what is due; kicks itself if more is due."""
    runtime = get_runtime()
    outbound = runtime.settings.outbound
    result = deliver_due(runtime.db, outbound, _transport())
    if result.more:
        kick(force=True)
    return ",".join(f"{k}:{v}" for k, v in sorted(result.verdicts.items())) or "idle"


def _transport() -> HttpTransport:
    """One pooled HTTP client per process (a forked child builds its own)."""
    pid = os.getpid()
    with _lock:
        transport = _transports.get(pid)
        if transport is None:
            transport = HttpTransport(get_runtime().settings.outbound)
            _transports.clear()
            _transports[pid] = transport
        return transport


def kick(*, force: bool = False) -> None:
    """Publish a delivery task soon; at most one per KICK_DELAY_SECONDS per process. A
    failed publish is only logged: beat's poll delivers anyway."""
    now = time.monotonic()
    with _lock:
        if not force and now - _last_kick[0] < KICK_DELAY_SECONDS:
            return
        _last_kick[0] = now
    try:
        deliver_outbox.apply_async(queue=REALTIME_QUEUE, countdown=KICK_DELAY_SECONDS)
    except Exception as exc:
        log.warning("outbox kick not published (%s); beat will deliver", type(exc).__name__)


def _after_commit(session: Session) -> None:
    if session.info.pop(EMITTED_KEY, False) and _kicks_enabled[0]:
        kick()


def _after_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(EMITTED_KEY, None)  # nothing was emitted after all


def enable_kicks() -> None:
    """Kick a delivery after every commit that emitted (worker processes; idempotent)."""
    with _lock:
        if _kicks_enabled[0]:
            return
        _kicks_enabled[0] = True
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_soft_rollback", _after_rollback)


@signals.worker_process_init.connect
def _on_worker_process(**_kwargs: Any) -> None:
    enable_kicks()


@signals.worker_init.connect
def _on_worker(**_kwargs: Any) -> None:
    enable_kicks()
