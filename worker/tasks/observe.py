"""Celery signals for observability: log context per task, dead processes' metrics, beat's
heartbeat, and a health ping of one named worker over the configured broker."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from celery import signals
from celery.beat import PersistentScheduler

from worker.observability import logs, metrics
from worker.tasks.app import celery_app

HEARTBEAT_CONF_KEY = "passsync_beat_heartbeat"
log = logging.getLogger("passsync.worker")


@signals.setup_logging.connect
def _keep_our_logging(**_kwargs: Any) -> None:
    """Connected, so Celery leaves the root logger as `passsync worker|beat` configured it."""


@signals.worker_ready.connect
def _announce_ready(sender: Any = None, **_kwargs: Any) -> None:
    # Celery's own "ready." line is quieted with its logger; operators and the process tests
    # still need one line saying the worker consumes.
    log.info("worker %s ready.", getattr(sender, "hostname", "?"))


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, **_kwargs: Any) -> None:
    logs.clear()
    logs.bind(task_id=task_id)


@signals.task_postrun.connect
def _unbind_task(**_kwargs: Any) -> None:
    logs.clear()


@signals.worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **_kwargs: Any) -> None:
    # A replaced pool process (max memory, a crash) leaves no stale live gauge behind.
    metrics.mark_process_dead(pid or os.getpid())


class HeartbeatScheduler(PersistentScheduler):  # type: ignore[misc]
    """Beat's scheduler, touching a heartbeat file on every tick: the health check reads its
    age, whatever the schedule store's file name (it depends on the dbm backend)."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        wait: float = super().tick(*args, **kwargs)
        path = self.app.conf.get(HEARTBEAT_CONF_KEY)
        if path:
            heartbeat = Path(path)
            heartbeat.touch()
        return wait


def ping_worker(name: str, timeout: float = 5.0) -> bool:
    """True when the worker `name@<this host>` answers a ping over the configured broker."""
    node = f"{name}@{socket.gethostname()}"
    replies = celery_app.control.ping(destination=[node], timeout=timeout)
    return any(node in reply for reply in replies or [])
