"""SIGHUP in a worker: reload the credentials (worker.providers.rotation) instead of Celery's
restart. The main process installs it once ready (after Celery's own SIGHUP handler); each
pool process too, so a SIGHUP sent to the whole process group never kills a task."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from worker.config import ConfigError, load_settings
from worker.providers.rotation import install_sighup

log = logging.getLogger("passsync.credentials")


def _install() -> None:
    try:
        install_sighup(load_settings())
    except (ConfigError, ValueError) as exc:  # not in the main thread, or settings gone bad
        log.warning("SIGHUP credential reload not installed: %s", exc)


@signals.worker_ready.connect
def _on_ready(**_kwargs: Any) -> None:
    _install()


@signals.worker_process_init.connect
def _on_pool_process(**_kwargs: Any) -> None:
    _install()
