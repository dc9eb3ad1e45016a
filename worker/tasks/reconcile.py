"""The reconciliation beat task and its Passcreator catalog adapter (pages under the budget)."""

from __future__ import annotations

import logging
from itertools import islice

from worker.adoption.reconcile import (
    CatalogPass,
    Page,
    PassCatalog,
    ReconcileResult,
    current_cursor,
    reconcile_page,
)
from worker.config import Settings
from worker.db import Database
from worker.providers.passcreator.client import PasscreatorClient
from worker.providers.passcreator.models import PassRow
from worker.ratelimit.limiter import SharedLimiter
from worker.ratelimit.provider import build_limiter
from worker.tasks.app import celery_app
from worker.tasks.runtime import get_runtime

log = logging.getLogger("passsync.tasks.reconcile")


class PasscreatorCatalog:
    """Passes newest first; the cursor is how many were read in this sweep.

    The client follows Passcreator's own keyset links (`page.next`) but does not expose
    them, so a run re-reads the pages before its cursor; each page read takes a slot from
    the shared budget, in the bulk lane (realtime sync goes first).
    """

    def __init__(self, client: PasscreatorClient, limiter: SharedLimiter | None) -> None:
        self._client = client
        self._limiter = limiter

    def page(self, cursor: str | None, size: int) -> Page:
        offset = int(cursor or 0)
        if self._limiter is not None:
            for _ in range(offset // size + 1):
                self._limiter.acquire("bulk", max_wait=30.0)
        rows = list(islice(self._client.iter_passes(page_size=size), offset, offset + size + 1))
        more = len(rows) > size
        return Page([_catalog(r) for r in rows[:size]], str(offset + size) if more else None)


def _catalog(row: PassRow) -> CatalogPass:
    return CatalogPass(
        pass_id=row.pass_id,
        user_provided_id=row.user_provided_id,
        template_id=row.template_id,
        voided=bool(row.voided),
        barcode=row.barcode_value,
        active_devices=row.active_devices,
    )


def run_once(
    settings: Settings, db: Database, catalog: PassCatalog, *, repair: bool
) -> ReconcileResult:
    """Read one page from where the last run stopped and reconcile it (committed)."""
    provider = settings.sync.provider
    with db.session() as session:
        cursor = current_cursor(session, provider)
    page = catalog.page(cursor, settings.reconcile.passes_per_run)  # no transaction open
    prefix = settings.providers.passcreator.user_provided_id_prefix
    with db.session() as session:
        return reconcile_page(session, provider, prefix, page, repair=repair)


@celery_app.task(name="passsync.reconcile", acks_late=True)
def reconcile() -> str:
    """One incremental reconciliation step (when reconcile.enabled)."""
    runtime = get_runtime()
    settings = runtime.settings
    if not settings.reconcile.enabled:
        return "disabled"
    on_attempt = None if runtime.audit is None else runtime.audit.on_attempt
    with PasscreatorClient(settings.providers.passcreator, on_attempt=on_attempt) as client:
        catalog = PasscreatorCatalog(client, build_limiter(settings))
        result = run_once(
            settings, runtime.db, catalog, repair=settings.reconcile.repair == "repair"
        )
    if result.drift:
        log.warning("reconciliation found drift: %s", result.drift)
    return f"read {result.read}, drift {len(result.drift)}"
