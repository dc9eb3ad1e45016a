"""Reconciliation: page through the provider's passes and find (and repair) drift.

Incremental: each run reads at most `reconcile.passes_per_run` passes from where the last
run stopped (the cursor is in SQL); every pass read is stamped with the sweep number, so
when a sweep completes, a live mapping whose pass was never read is missing at the provider.
Each page read goes through the shared rate budget (the catalog adapter takes the slot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.adoption.ledger import adoption_state
from worker.adoption.models import Drift, PassAdoption, ReconcileCursor
from worker.db import utcnow
from worker.providers.port import CatalogPass, Page, PassCatalog
from worker.sync.models import PassMapping, PassStatus

LIVE = (PassStatus.ACTIVE, PassStatus.VOIDED)
__all__ = ["CatalogPass", "Page", "PassCatalog", "ReconcileResult", "reconcile_page"]


class DriftKind(StrEnum):
    MISSING = "missing_at_provider"  # a live mapping, the pass gone at the provider
    VOIDED = "voided_at_provider"  # voided there, active here
    UNMAPPED = "unmapped_at_provider"  # one of our passes there, no mapping here


@dataclass
class ReconcileResult:
    read: int = 0
    sweep_complete: bool = False
    drift: list[tuple[str, str | None]] = field(default_factory=list)  # (kind, pass id)


def reconcile_page(
    session: Session, provider: str, prefix: str, page: Page, *, repair: bool
) -> ReconcileResult:
    """Compare one page with the mappings, advance the cursor, record (and repair) drift.

    Repairs are local only (no provider call): a pass voided at the provider (usually
    redeemed by its scanner app) is marked voided here, a missing one is forgotten (the
    next event for it creates it again), an unmapped one of ours is adopted.
    """
    cursor = _cursor(session, provider)
    run = _Run(session, provider, prefix, repair, ReconcileResult(read=len(page.passes)))
    for listed in page.passes:
        run.compare(listed, cursor.sweep)
    cursor.cursor = page.next_cursor
    if page.next_cursor is None:
        run.missing(cursor)
        cursor.sweep += 1
        cursor.sweep_started_at = utcnow()
        run.result.sweep_complete = True
    return run.result


def current_cursor(session: Session, provider: str) -> str | None:
    """Where the next run starts (None: at the beginning of a new sweep)."""
    row = session.get(ReconcileCursor, provider)
    return None if row is None else row.cursor


def _cursor(session: Session, provider: str) -> ReconcileCursor:
    row = session.get(ReconcileCursor, provider, with_for_update=True)
    if row is None:
        row = ReconcileCursor(provider=provider, cursor=None, sweep=1, sweep_started_at=utcnow())
        session.add(row)
        session.flush()
    return row


@dataclass
class _Run:
    session: Session
    provider: str
    prefix: str
    repair: bool
    result: ReconcileResult

    def compare(self, listed: CatalogPass, sweep: int) -> None:
        state = adoption_state(self.session, listed.pass_id)
        state.seen_sweep = sweep
        state.barcode = listed.barcode or state.barcode
        if listed.active_devices is not None:
            state.active_devices = listed.active_devices  # the provider's counter is the truth
        mapping = self.session.scalars(
            select(PassMapping).where(
                PassMapping.provider == self.provider,
                PassMapping.provider_pass_id == listed.pass_id,
            )
        ).first()
        if mapping is None:
            self.unmapped(listed)
        elif listed.voided and mapping.status == PassStatus.ACTIVE:
            self.drift(DriftKind.VOIDED, listed.pass_id, mapping.id, repaired=self.repair)
            if self.repair:
                mapping.status = PassStatus.VOIDED

    def unmapped(self, listed: CatalogPass) -> None:
        owner = parse_user_provided_id(self.prefix, listed.user_provided_id)
        if owner is None:
            return  # not one of ours: passes made by hand or by another system
        mapping = self.adopt(listed, *owner) if self.repair else None
        mapping_id = None if mapping is None else mapping.id
        self.drift(DriftKind.UNMAPPED, listed.pass_id, mapping_id, repaired=mapping is not None)

    def adopt(self, listed: CatalogPass, pass_key: str, customer_id: str) -> PassMapping | None:
        existing = self.session.scalars(
            select(PassMapping).where(
                PassMapping.provider == self.provider,
                PassMapping.customer_id == customer_id,
                PassMapping.pass_key == pass_key,
            )
        ).first()
        if existing is not None and existing.status in LIVE:
            return None  # a twin: the mapping points at another pass; left for a human
        mapping = existing or PassMapping(
            provider=self.provider, customer_id=customer_id, pass_key=pass_key
        )
        mapping.user_provided_id = listed.user_provided_id or ""
        mapping.provider_pass_id = listed.pass_id
        mapping.template_id = listed.template_id
        mapping.status = PassStatus.VOIDED if listed.voided else PassStatus.ACTIVE
        mapping.content_hash = None  # unknown content: the next event updates it
        self.session.add(mapping)
        self.session.flush()
        return mapping

    def missing(self, cursor: ReconcileCursor) -> None:
        seen = select(PassAdoption.provider_pass_id).where(PassAdoption.seen_sweep == cursor.sweep)
        query = select(PassMapping).where(
            PassMapping.provider == self.provider,
            PassMapping.status.in_(LIVE),
            PassMapping.provider_pass_id.is_not(None),
            PassMapping.provider_pass_id.not_in(seen),
            PassMapping.created_at < cursor.sweep_started_at,
        )
        for mapping in self.session.scalars(query):
            self.drift(
                DriftKind.MISSING, mapping.provider_pass_id, mapping.id, repaired=self.repair
            )
            if self.repair:
                mapping.status = PassStatus.DELETED
                mapping.provider_pass_id = mapping.content_hash = None

    def drift(
        self, kind: DriftKind, pass_id: str | None, mapping_id: int | None, *, repaired: bool
    ) -> None:
        self.session.add(
            Drift(
                provider=self.provider,
                kind=kind,
                provider_pass_id=pass_id,
                mapping_id=mapping_id,
                action="repaired" if repaired else "reported",
                found_at=utcnow(),
            )
        )
        self.result.drift.append((str(kind), pass_id))


def parse_user_provided_id(prefix: str, value: str | None) -> tuple[str, str] | None:
    """(pass key, customer id) from `{prefix}-{pass_key}-{customer_id}`, else None.

    Hashed ids (`~...`, for customer ids that are not URL-safe) cannot be reversed.
    """
    if not value or not value.startswith(prefix + "-"):
        return None
    key, sep, customer = value[len(prefix) + 1 :].partition("-")
    if not sep or not key or not customer or customer.startswith("~"):
        return None
    return key, customer
