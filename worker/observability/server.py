"""The worker's metrics endpoint: a small HTTP server in the Celery parent process that adds
up every pool process's counters (prometheus-client multiprocess mode)."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from worker.config import MetricsSettings
from worker.observability import metrics

log = logging.getLogger("passsync.metrics")


def serve_worker_metrics(settings: MetricsSettings, host: str = "0.0.0.0") -> int | None:  # noqa: S104
    """Serve GET /metrics on `metrics.worker_port`; the port, or None when off or taken.

    A taken port is a warning, not a failure: a worker without metrics still does its work.
    """
    if not settings.enabled or not settings.worker_port:
        return None
    try:
        start_http_server(settings.worker_port, host, registry=metrics.scrape_registry())
    except OSError as exc:
        log.warning(
            "metrics: port %d unavailable (%s); this worker serves no /metrics",
            settings.worker_port,
            type(exc).__name__,
        )
        return None
    return settings.worker_port
