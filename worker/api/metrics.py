"""GET /metrics: the Prometheus exposition of this API process (or all of them, multiprocess)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from worker.observability import metrics

router = APIRouter(tags=["health"])

REGISTRY_KEY = "passsync_metrics_registry"


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request) -> Response:
    """Counters of every family plus the scrape-time gauges (ledger, outbox, campaigns,
    broker); 404 with `metrics.enabled: false`."""
    registry: CollectorRegistry | None = getattr(request.app.state, REGISTRY_KEY, None)
    if registry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "metrics are off")
    # The database and broker gauges do blocking I/O: off the event loop.
    body = await anyio.to_thread.run_sync(metrics.render, registry)
    return Response(body, media_type=metrics.CONTENT_TYPE)
