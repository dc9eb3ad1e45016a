"""The reconciliation beat task: one page per account and run, under its shared budget."""

from __future__ import annotations

import logging
from collections.abc import Callable

from worker.adoption.reconcile import (
    PassCatalog,
    ReconcileResult,
    current_cursor,
    reconcile_page,
)
from worker.config import Settings
from worker.db import Database
from worker.providers import registry
from worker.ratelimit.limiter import SharedLimiter
from worker.ratelimit.provider import build_limiter
from worker.tasks.app import celery_app
from worker.tasks.runtime import get_runtime

log = logging.getLogger("passsync.tasks.reconcile")


def _slot_taker(limiter: SharedLimiter) -> Callable[[], None]:
    def take() -> None:
        limiter.acquire("bulk", max_wait=30.0)

    return take


def run_once(
    settings: Settings,
    db: Database,
    catalog: PassCatalog,
    *,
    repair: bool,
    account: str | None = None,
) -> ReconcileResult:
    """Read one page of the account's passes (default account for None) from where its last
    run stopped (its own cursor) and reconcile it (committed)."""
    name = registry.account(settings, account).name
    with db.session() as session:
        cursor = current_cursor(session, name)
    page = catalog.page(cursor, settings.reconcile.passes_per_run)  # no transaction open
    prefix = settings.sync.external_id_prefix
    with db.session() as session:
        return reconcile_page(session, name, prefix, page, repair=repair)


@celery_app.task(name="passsync.reconcile", acks_late=True)
def reconcile() -> str:
    """One incremental reconciliation step (when reconcile.enabled)."""
    runtime = get_runtime()
    settings = runtime.settings
    if not settings.reconcile.enabled:
        return "disabled"
    on_attempt = None if runtime.audit is None else runtime.audit.on_attempt
    summary = []
    for account in registry.accounts(settings).values():
        if account.kind.catalog is None or not account.has_credentials:
            continue  # the platform cannot list its passes, or the account is not set up
        limiter = build_limiter(settings, account.name)
        take_slot = None if limiter is None else _slot_taker(limiter)
        client = account.build_client(on_attempt)
        try:
            catalog = account.kind.catalog(client, take_slot)
            result = run_once(
                settings,
                runtime.db,
                catalog,
                repair=settings.reconcile.repair == "repair",
                account=account.name,
            )
        finally:
            client.close()
        if result.drift:
            log.warning("reconciliation of %s found drift: %s", account.name, result.drift)
        summary.append(f"{account.name}: read {result.read}, drift {len(result.drift)}")
    return "; ".join(summary) or "no account to reconcile"
