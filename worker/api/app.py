"""The FastAPI app factory: receiver, admin API and health probes around one context."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse, Response
from prometheus_client.registry import Collector

from worker.api import (
    accounts,
    admin,
    adoption,
    audit,
    callbacks,
    campaigns,
    dashboard,
    errors,
    health,
    metrics,
    outbox,
    passes,
    scans,
    scans_listing,
    webhooks,
)
from worker.api.auth import AdminAuth
from worker.api.context import STATE_KEY, ApiContext, BrokerPing, Enqueue
from worker.api.docs import install_docs
from worker.api.edge import BodyLimit, EdgeGate
from worker.api.fastpath import PasssyncApi
from worker.api.intake import Intake, IntakeUnavailableError, build_writers
from worker.config import ConfigError, Settings
from worker.db import DATABASE_UNAVAILABLE, Database
from worker.inbound.signatures import SecretFormatError, WebhookVerifier
from worker.inbound.sources.adapter import SourceAdapter, SpecError, build_adapters
from worker.observability import metrics as counting
from worker.observability.collectors import BrokerCollector, DatabaseCollector, IntakeCollector

log = logging.getLogger("passsync.api")

RETRY_AFTER_SECONDS = 5
IMPORT_ROUTE = re.compile(r"/api/campaigns/[0-9]+/recipients")


def create_app(
    settings: Settings,
    db: Database,
    enqueue: Enqueue,
    broker_ping: BrokerPing,
    enqueue_scans: Enqueue | None = None,
    *,
    broker_depth: Callable[[], Mapping[str, int]] | None = None,
) -> FastAPI:
    """Build the HTTP app; `enqueue` publishes ledger ids (`enqueue_scans` scan ids; without
    it the beat sweep publishes them), `broker_ping` raises when down, `broker_depth` counts
    the messages per queue for /metrics."""
    intake = Intake(build_writers(db, settings.api.ingest), enqueue, settings.api.ingest)
    ctx = ApiContext(
        settings=settings,
        db=db,
        enqueue=enqueue,
        broker_ping=broker_ping,
        verifiers=_verifiers(settings),
        admin_auth=AdminAuth(settings.admin_tokens),
        intake=intake,
        adapters=_adapters(settings),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        intake.start()
        # Everything alive now (the app, its models and schemas) lives as long as the process:
        # moving it out of the collector's reach keeps full collections, and their pauses in
        # the middle of requests, short.
        gc.collect()
        gc.freeze()
        yield
        await intake.stop()

    app = PasssyncApi(
        title="passsync", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None
    )
    install_docs(app)
    setattr(app.state, STATE_KEY, ctx)
    setattr(app.state, scans.SCAN_ENQUEUE_KEY, enqueue_scans)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(audit.router)
    app.include_router(accounts.router)
    app.include_router(campaigns.router)
    app.include_router(outbox.router)
    app.include_router(passes.router)
    app.include_router(scans.router)
    app.include_router(scans_listing.router)
    app.include_router(callbacks.router)
    app.include_router(adoption.router)
    app.include_router(dashboard.router)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(IntakeUnavailableError, _intake_unavailable)
    counting.set_enabled(settings.metrics.enabled)
    if settings.metrics.enabled:
        collectors: list[Collector] = [
            IntakeCollector(lambda: intake.stats),
            DatabaseCollector(db),
        ]
        if broker_depth is not None:
            collectors.append(BrokerCollector(broker_depth))
        setattr(app.state, metrics.REGISTRY_KEY, counting.scrape_registry(collectors))
    errors.install(app)
    errors.document(app)
    app.gate = EdgeGate(
        ctx.admin_auth,
        settings.api.max_body_bytes,
        # The one route that streams its body has its own limit.
        [BodyLimit(IMPORT_ROUTE, settings.campaigns.max_import_bytes)],
    )
    return app


def _version() -> str:
    # From the installed metadata: the editable install here maps `worker` as a namespace
    # package, so `worker.__version__` is not always importable.
    try:
        return version("passsync")
    except PackageNotFoundError:
        return "0+unknown"


def _verifiers(settings: Settings) -> dict[str, WebhookVerifier]:
    verifiers: dict[str, WebhookVerifier] = {}
    for name, source in settings.sources.items():
        if source.kind != "standard":
            continue  # a sender's own format: see _adapters
        try:
            verifier = WebhookVerifier.for_source(
                source, tolerance_seconds=settings.api.signature_tolerance_seconds
            )
        except SecretFormatError as exc:
            env = f"PASSSYNC_SOURCES__{name.upper()}__SECRET / __PREVIOUS_SECRETS"
            raise ConfigError(f"setting sources.{name} ({env}): {exc}") from None
        if not verifier.configured:
            log.warning("source %s has no secret: its webhooks are refused with 401", name)
        verifiers[name] = verifier
    return verifiers


def _adapters(settings: Settings) -> dict[str, SourceAdapter]:
    try:
        adapters = build_adapters(settings.sources)
    except (SpecError, SecretFormatError) as exc:
        raise ConfigError(str(exc)) from None
    for name, adapter in adapters.items():
        if not adapter.configured:
            log.warning("source %s has no secret: its webhooks are refused with 401", name)
    return adapters


async def _intake_unavailable(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IntakeUnavailableError)
    return JSONResponse(
        {"detail": exc.reason},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(exc.retry_after)},
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # The type only: driver messages can carry SQL parameters (customer data); the route's
    # template, not the path, which may carry a callback token.
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    log.warning("database unavailable on %s %s (%s)", request.method, route, type(exc).__name__)
    return JSONResponse(
        {"detail": "database unavailable"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
