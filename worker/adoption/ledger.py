"""Provider callbacks into the adoption ledger and the per-pass adoption state."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.adoption.models import AdoptionEvent, Kind, PassAdoption
from worker.db import utcnow
from worker.outbox.emit import emit
from worker.outbox.passes import pass_view
from worker.sync.models import PassMapping

# Passcreator's event names (§6.1) -> our kinds; the scan event's name is unconfirmed.
PASSCREATOR_EVENTS = {
    "pass_created": Kind.CREATED,
    "pushnotification_registered": Kind.INSTALLED,
    "first_pushnotification_registered": Kind.INSTALLED,
    "pushnotification_unregistered": Kind.REMOVED,
    "pass_voided": Kind.VOIDED,
    "pass_scanned": Kind.SCANNED,
    "app_scan": Kind.SCANNED,
}
PASS_ID_KEYS = ("identifier", "passId", "passIdentifier", "pass_id", "uid")
PLATFORM_KEYS = ("platform", "operatingSystem", "deviceType", "os")


@dataclass(frozen=True)
class Callback:
    """One callback, parsed: what happened to which pass, on which platform."""

    callback_id: str
    kind: Kind
    provider_pass_id: str | None
    platform: str | None
    occurred_at: datetime
    payload: dict[str, Any]


def parse_callback(
    event: str, payload: dict[str, Any], delivery_id: str | None, raw: bytes
) -> Callback | None:
    """None for an event we do not track; the id is the delivery's, else the body's digest."""
    kind = PASSCREATOR_EVENTS.get(event)
    if kind is None:
        return None
    digest = hashlib.sha256(event.encode() + b"\n" + raw).hexdigest()
    return Callback(
        callback_id=delivery_id or f"sha256:{digest}",
        kind=kind,
        provider_pass_id=_first_text(payload, PASS_ID_KEYS),
        platform=normalize_platform(_first_text(payload, PLATFORM_KEYS)),
        occurred_at=utcnow(),
        payload=payload,
    )


def normalize_platform(value: str | None) -> str | None:
    """ios, android, or the value lower-cased (the provider's spelling varies)."""
    if not value:
        return None
    low = value.lower()
    if low in ("ios", "iphone", "apple", "ipad", "applewallet"):
        return "ios"
    if low in ("android", "google", "googlewallet", "googlepay"):
        return "android"
    return low[:32]


def _first_text(payload: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = payload.get(key)
        if isinstance(value, str | int) and str(value):
            return str(value)[:255]
    return None


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
            occurred_at=callback.occurred_at,
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
    at, payload = callback.occurred_at, callback.payload
    if callback.kind is Kind.CREATED:
        state.barcode = _first_text(payload, ("uniqueIdentifier", "barcodeValue")) or state.barcode
        state.template = (
            _first_text(payload, ("passTemplate", "passTemplateName")) or state.template
        )
    elif callback.kind is Kind.INSTALLED:
        state.active_devices += 1
        state.installs += 1
        state.first_installed_at = state.first_installed_at or at
        state.platform = state.platform or callback.platform
        state.removed_at = None
    elif callback.kind is Kind.REMOVED:
        state.active_devices = max(0, state.active_devices - 1)
        state.removals += 1
        state.removed_at = at if state.active_devices == 0 else state.removed_at
    elif callback.kind is Kind.VOIDED:
        state.voided_at = state.voided_at or at
    elif callback.kind is Kind.SCANNED:
        state.used_at = state.used_at or at


def _emit(session: Session, provider: str, callback: Callback) -> None:
    """pass.installed / pass.removed for passes we issued (the CRM learns adoption)."""
    kinds = {Kind.INSTALLED: "pass.installed", Kind.REMOVED: "pass.removed"}
    event_type = kinds.get(callback.kind)
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
