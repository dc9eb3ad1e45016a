"""Provider callbacks into the adoption ledger and the per-pass adoption state."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.adoption.models import AdoptionEvent, Kind, PassAdoption
from worker.db import utcnow
from worker.outbox.emit import emit
from worker.providers.port import CallbackFact
from worker.sync.models import PassMapping
from worker.sync.outbound import pass_view

# A callback as the platform's parser gives it (worker.providers.port.CallbackFact).
Callback = CallbackFact


def record_callback(session: Session, provider: str, callback: Callback) -> bool:
    """Store the callback once and apply it to the pass's state; False for a duplicate."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    inserted = session.execute(
        dialect.insert(AdoptionEvent)
        .values(
            provider=provider,
            callback_id=callback.callback_id,
            kind=callback.kind,
            provider_pass_id=callback.provider_pass_id,
            platform=callback.platform,
            occurred_at=callback.occurred_at or utcnow(),
            payload=callback.payload,
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["provider", "callback_id"])
        .returning(AdoptionEvent.id)
    ).scalar_one_or_none()
    if inserted is None:
        return False
    if callback.provider_pass_id:
        state = adoption_state(session, callback.provider_pass_id)
        apply_kind(state, callback)
        _emit(session, provider, callback)
    return True


def adoption_state(session: Session, provider_pass_id: str) -> PassAdoption:
    """The pass's adoption row, created if missing, locked for this transaction."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(PassAdoption)
        .values(
            provider_pass_id=provider_pass_id,
            active_devices=0,
            installs=0,
            removals=0,
            seen_sweep=0,
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["provider_pass_id"])
    )
    query = select(PassAdoption).where(PassAdoption.provider_pass_id == provider_pass_id)
    return session.scalars(query.with_for_update()).one()


def apply_kind(state: PassAdoption, callback: Callback) -> None:
    """Move the pass along the funnel; a device count never goes below zero."""
    at, kind = callback.occurred_at or utcnow(), Kind(callback.kind)
    if kind is Kind.CREATED:
        state.barcode = callback.barcode or state.barcode
        state.template = callback.template or state.template
    elif kind is Kind.INSTALLED:
        state.active_devices += 1
        state.installs += 1
        state.first_installed_at = state.first_installed_at or at
        state.platform = state.platform or callback.platform
        state.removed_at = None
    elif kind is Kind.REMOVED:
        state.active_devices = max(0, state.active_devices - 1)
        state.removals += 1
        state.removed_at = at if state.active_devices == 0 else state.removed_at
    elif kind is Kind.VOIDED:
        state.voided_at = state.voided_at or at
    elif kind is Kind.SCANNED:
        state.used_at = state.used_at or at


def _emit(session: Session, provider: str, callback: Callback) -> None:
    """pass.installed / pass.removed for passes we issued (the CRM learns adoption)."""
    kinds = {Kind.INSTALLED: "pass.installed", Kind.REMOVED: "pass.removed"}
    event_type = kinds.get(Kind(callback.kind))
    if event_type is None:
        return
    mapping = session.scalars(
        select(PassMapping).where(
            PassMapping.provider == provider,
            PassMapping.provider_pass_id == callback.provider_pass_id,
        )
    ).first()
    if mapping is None:
        return
    payload = {"pass": pass_view(mapping), "platform": callback.platform}
    emit(session, event_type, payload, mapping.customer_id, f"callback:{callback.callback_id}")
