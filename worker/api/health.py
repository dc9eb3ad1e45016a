"""Liveness (the process answers) and readiness (database, broker, provider key answer)."""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import anyio
from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from worker.api.accounts import reloader_of
from worker.api.context import ApiContext, Context
from worker.db import Database
from worker.migrate import current_revisions, head_revisions
from worker.providers import registry
from worker.providers.credentials import CachedCredentialCheck, CredentialStatus

log = logging.getLogger("passsync.api.health")

router = APIRouter(tags=["health"])

# A check that hangs (a black-holed host) counts as failed instead of hanging the probe.
CHECK_TIMEOUT_SECONDS = 5.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(ctx: Context) -> JSONResponse:
    """200 when events can be accepted durably, else 503 naming what is wrong.

    The receiver is ready when the database answers at the code's schema (else "database not
    migrated: run passsync db upgrade"), its group-commit queue is not full, and no provider
    account's API key is refused ("provider refused the API key"; checked once a minute).
    A broker that is down is reported but does not make the receiver unready: accepted
    events wait in the ledger and the sweeper enqueues them once the broker is back.
    """
    results: dict[str, Any] = {
        "database": await _check("database", functools.partial(_ping_migrated, ctx.db)),
        "broker": await _check("broker", ctx.broker_ping),
        "provider": await _provider(ctx),
    }
    intake = ctx.intake
    results["ingest"] = "overloaded" if intake.overloaded else "ok"
    ready = (
        results["database"] == "ok"
        and results["ingest"] == "ok"
        and CredentialStatus.REFUSED not in results["provider"]
    )
    results["stats"] = asdict(intake.stats)
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    headers = None if ready else {"Retry-After": str(ctx.settings.api.ingest.retry_after_seconds)}
    return JSONResponse(results, status_code=code, headers=headers)


class NotMigratedError(Exception):
    """The database answers but lacks the schema this code needs."""


NOT_MIGRATED = "database not migrated: run passsync db upgrade"
# Databases seen at the code's schema: checked once, a plain ping after that.
_migrated: weakref.WeakSet[Database] = weakref.WeakSet()


def _ping_migrated(db: Database) -> None:
    if db in _migrated:
        db.ping()
        return
    if current_revisions(db.engine) != head_revisions():
        raise NotMigratedError
    _migrated.add(db)


# Per app: one cached credential check per account that has credentials, with the account
# settings it was built from (a rotation replaces them: the check is built again).
_credential_checks: dict[int, dict[str, tuple[object, CachedCredentialCheck]]] = {}


def _accounts_checks(ctx: ApiContext) -> dict[str, CachedCredentialCheck]:
    reloader_of(ctx)  # a rotation reaches this process's settings
    checks = _credential_checks.setdefault(id(ctx), {})
    for name, account in registry.accounts(ctx.settings).items():
        built = checks.get(name)
        if built is not None and built[0] is account.settings:
            continue
        if account.has_credentials:
            checks[name] = (account.settings, CachedCredentialCheck(_probe(account)))
        else:
            checks.pop(name, None)
    return {name: check for name, (_conf, check) in checks.items()}


def _probe(account: registry.Account) -> Callable[[], object]:
    """One template listing with a client built for it and closed after it."""

    def probe() -> object:
        client = account.build_client()
        try:
            return client.list_templates()
        finally:
            client.close()

    return probe


async def _provider(ctx: ApiContext) -> str:
    """ "ok", "provider refused the API key (account 'x')", or "unavailable" (not fatal)."""
    worst = CredentialStatus.OK.value
    for name, check in _accounts_checks(ctx).items():
        try:
            with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
                found = await anyio.to_thread.run_sync(check.status, abandon_on_cancel=True)
        except TimeoutError:
            found = CredentialStatus.UNAVAILABLE
        if found is CredentialStatus.REFUSED:
            return f"{found.value} (account {name!r})"
        if found is CredentialStatus.UNAVAILABLE:
            worst = found.value
    return worst


async def _check(name: str, probe: Callable[[], None]) -> str:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            await anyio.to_thread.run_sync(probe, abandon_on_cancel=True)
    except NotMigratedError:
        return NOT_MIGRATED
    except Exception as exc:
        # The type only: driver and broker messages can include connection URLs.
        log.warning("readiness check %s failed (%s)", name, type(exc).__name__)
        return "unavailable"
    return "ok"
