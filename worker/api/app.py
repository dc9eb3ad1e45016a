"""The FastAPI app factory: receiver, admin API and health probes around one context."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse, Response

from worker.api import (
    admin,
    adoption,
    audit,
    callbacks,
    campaigns,
    dashboard,
    errors,
    health,
    outbox,
    passes,
    scans,
    webhooks,
)
from worker.api.auth import AdminAuth
from worker.api.context import STATE_KEY, ApiContext, BrokerPing, Enqueue
from worker.api.edge import EdgeGate
from worker.api.fastpath import PasssyncApi
from worker.api.intake import Intake, IntakeUnavailableError, build_writers
from worker.config import ConfigError, Settings
from worker.db import DATABASE_UNAVAILABLE, Database
from worker.inbound.signatures import SecretFormatError, WebhookVerifier

log = logging.getLogger("passsync.api")

RETRY_AFTER_SECONDS = 5


def create_app(
    settings: Settings,
    db: Database,
    enqueue: Enqueue,
    broker_ping: BrokerPing,
    enqueue_scans: Enqueue | None = None,
) -> FastAPI:
    """Build the HTTP app; `enqueue` publishes ledger ids (`enqueue_scans` scan ids; without
    it the beat sweep publishes them), `broker_ping` raises when down."""
    intake = Intake(build_writers(db, settings.api.ingest), enqueue, settings.api.ingest)
    ctx = ApiContext(
        settings=settings,
        db=db,
        enqueue=enqueue,
        broker_ping=broker_ping,
        verifiers=_verifiers(settings),
        admin_auth=AdminAuth(settings.admin_tokens),
        intake=intake,
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

    app = PasssyncApi(title="passsync", version=_version(), lifespan=lifespan)
    setattr(app.state, STATE_KEY, ctx)
    setattr(app.state, scans.SCAN_ENQUEUE_KEY, enqueue_scans)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(audit.router)
    app.include_router(campaigns.router)
    app.include_router(outbox.router)
    app.include_router(passes.router)
    app.include_router(scans.router)
    app.include_router(callbacks.router)
    app.include_router(adoption.router)
    app.include_router(dashboard.router)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(IntakeUnavailableError, _intake_unavailable)
    errors.install(app)
    errors.document(app)
    app.gate = EdgeGate(ctx.admin_auth, settings.api.max_body_bytes)
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


async def _intake_unavailable(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IntakeUnavailableError)
    return JSONResponse(
        {"detail": exc.reason},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(exc.retry_after)},
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # The type only: driver messages can carry SQL parameters (customer data).
    log.warning(
        "database unavailable on %s %s (%s)", request.method, request.url.path, type(exc).__name__
    )
    return JSONResponse(
        {"detail": "database unavailable"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
