"""Apply one recorded scan as pass usage, in three steps like the sync engine.

1. **Decide** (short transaction, committed here): resolve the pass, apply the usage rule to
   the local counters (a coupon is redeemed by its first valid scan only), and store the
   effect on the scan row. A retry repeats the stored effect, never decides again, so a
   visit is counted once however often the task runs.
2. **Call** the provider with no transaction open: void, set fields, push.
3. **Record** (the caller's transaction): the scan accepted, the mapping voided, pass.used
   emitted to the outbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from worker.config import Settings, UsageRule
from worker.db import utcnow
from worker.outbox.emit import emit
from worker.providers.errors import NotFoundError, ProviderError, RejectedError
from worker.providers.port import PassProvider
from worker.scans.models import PassUsage, Scan, ScanStatus
from worker.sync.models import PassAdoption, PassMapping, PassStatus
from worker.sync.outbound import pass_view

FINAL = frozenset({ScanStatus.ACCEPTED, ScanStatus.REJECTED, ScanStatus.UNKNOWN, ScanStatus.FAILED})
LIVE = (PassStatus.ACTIVE, PassStatus.VOIDED)


class ScanNotFoundError(LookupError):
    """The task names a scan that is not in the ledger."""


@dataclass(frozen=True)
class UsageContext:
    settings: Settings
    provider: PassProvider  # the default account's
    # account -> a context with that account's client (SyncContext.on); None: one account.
    on_account: Callable[[str], Any] | None = None

    def provider_of(self, account: str) -> PassProvider:
        """The client of the account holding a pass (the mapping's `provider` column)."""
        if self.on_account is None:
            return self.provider
        found: PassProvider = self.on_account(account).provider
        return found

    def rule_for(self, pass_key: str) -> UsageRule | None:
        return next((r for r in self.settings.usage.rules if r.pass_key == pass_key), None)


@dataclass(frozen=True)
class ScanResult:
    scan_id: int
    status: str
    reason: str | None = None
    already_handled: bool = False


def process_scan(session: Session, scan_id: int, ctx: UsageContext) -> ScanResult:
    """Decide (committed), call the provider, record (the caller commits)."""
    decided = _decide(session, scan_id, ctx)
    session.commit()
    if decided.status is not ScanStatus.APPLYING:
        return ScanResult(scan_id, decided.status, decided.reason, decided.already_handled)
    try:
        _call(ctx.provider_of(decided.account), decided.pass_id, decided.effect)
    except (RejectedError, NotFoundError) as exc:
        _finish(session, scan_id, ScanStatus.FAILED, f"provider refused: {exc.message}")
        return ScanResult(scan_id, ScanStatus.FAILED, exc.message)
    _record(session, scan_id, ctx)
    return ScanResult(scan_id, ScanStatus.ACCEPTED)


@dataclass(frozen=True)
class _Decision:
    status: ScanStatus
    pass_id: str = ""
    effect: dict[str, Any] | None = None
    reason: str | None = None
    already_handled: bool = False
    account: str = ""  # whose platform holds the pass


def _decide(session: Session, scan_id: int, ctx: UsageContext) -> _Decision:
    scan = session.get(Scan, scan_id, with_for_update=True)
    if scan is None:
        raise ScanNotFoundError(scan_id)
    if scan.status in FINAL:
        return _Decision(ScanStatus(scan.status), already_handled=True)
    mapping = _resolve(session, scan)
    if mapping is None or mapping.provider_pass_id is None:
        _set(scan, ScanStatus.UNKNOWN, "no known pass matches this scan")
        return _Decision(ScanStatus.UNKNOWN, reason=scan.reason)
    if scan.status == ScanStatus.APPLYING and scan.effect is not None:
        return _Decision(
            ScanStatus.APPLYING, mapping.provider_pass_id, scan.effect, account=mapping.provider
        )
    scan.mapping_id, scan.customer_id, scan.pass_key = (
        mapping.id,
        mapping.customer_id,
        mapping.pass_key,
    )
    rejection = _apply_rule(session, scan, mapping, ctx.rule_for(mapping.pass_key))
    if rejection is not None:
        _set(scan, ScanStatus.REJECTED, rejection)
        return _Decision(ScanStatus.REJECTED, reason=rejection)
    scan.status = ScanStatus.APPLYING
    return _Decision(
        ScanStatus.APPLYING, mapping.provider_pass_id, scan.effect, account=mapping.provider
    )


def _resolve(session: Session, scan: Scan) -> PassMapping | None:
    """The live pass the scan names (of any account), by pass id, customer + key, or barcode
    value."""
    query = select(PassMapping).where(PassMapping.status.in_(LIVE))
    if scan.mapping_id is not None:
        return session.scalars(query.where(PassMapping.id == scan.mapping_id)).first()
    if scan.provider_pass_id:
        query = query.where(PassMapping.provider_pass_id == scan.provider_pass_id)
    elif scan.customer_id and scan.pass_key:
        query = query.where(
            PassMapping.customer_id == scan.customer_id, PassMapping.pass_key == scan.pass_key
        )
    else:
        query = query.where(
            or_(
                PassMapping.user_provided_id == scan.barcode,
                PassMapping.provider_pass_id == scan.barcode,
                PassMapping.provider_pass_id.in_(_passes_with_barcode(scan.barcode)),
            )
        )
    return session.scalars(query.with_for_update().limit(1)).first()


def _passes_with_barcode(barcode: str | None) -> Any:
    # Barcode values the provider told us about in pass_created callbacks.
    return select(PassAdoption.provider_pass_id).where(PassAdoption.barcode == barcode)


def _apply_rule(
    session: Session, scan: Scan, mapping: PassMapping, rule: UsageRule | None
) -> str | None:
    """Update the counters and store the effect; a rejection reason when the scan is invalid."""
    usage = session.get(PassUsage, mapping.id, with_for_update=True)
    if usage is None:
        usage = PassUsage(mapping_id=mapping.id, uses=0, visits=0, points=0.0)
        session.add(usage)
    effect: dict[str, Any] = {"void": False, "fields": {}, "push": None}
    if rule is not None and rule.mode == "redeem":
        if usage.redeemed_scan_id is not None or mapping.status == PassStatus.VOIDED:
            return "coupon already redeemed"
        usage.redeemed_scan_id = scan.id
        effect["void"] = True
    elif rule is not None and rule.mode == "visit":
        effect["fields"] = _count_visit(usage, rule, scan.amount)
    if rule is not None and rule.push:
        effect["push"] = rule.push.replace("{location}", scan.location or "")
    usage.uses += 1
    usage.first_used_at = usage.first_used_at or scan.scanned_at
    usage.last_used_at = scan.scanned_at
    scan.effect = effect
    return None


def _count_visit(usage: PassUsage, rule: UsageRule, amount: float | None) -> dict[str, Any]:
    usage.visits += 1
    usage.points += (amount or 0.0) * rule.points_per_amount
    fields: dict[str, Any] = {}
    if rule.visits_field:
        fields[rule.visits_field] = usage.visits
    if rule.points_field:
        fields[rule.points_field] = round(usage.points, 2)
    return fields


def _call(provider: PassProvider, pass_id: str, effect: dict[str, Any] | None) -> None:
    effect = effect or {}
    if effect.get("fields"):
        provider.update_pass(pass_id, dict(effect["fields"]))
    if effect.get("push"):
        # Before the void: the provider refuses pushes to a voided pass (§3.2). A thank-you
        # that could not be sent does not undo the use.
        with contextlib.suppress(ProviderError):
            provider.send_push(pass_id, str(effect["push"]))
    if effect.get("void"):
        provider.set_voided(pass_id, True)


def _record(session: Session, scan_id: int, ctx: UsageContext) -> None:
    scan = session.get(Scan, scan_id, with_for_update=True)
    assert scan is not None and scan.mapping_id is not None
    mapping = session.get(PassMapping, scan.mapping_id)
    assert mapping is not None
    if (scan.effect or {}).get("void"):
        mapping.status = PassStatus.VOIDED
    _set(scan, ScanStatus.ACCEPTED, None)
    rule = ctx.rule_for(mapping.pass_key)
    if rule is None or rule.webhook:
        emit(
            session,
            "pass.used",
            _used_payload(scan, mapping),
            mapping.customer_id,
            f"scan:{scan.id}",
        )


def _used_payload(scan: Scan, mapping: PassMapping) -> dict[str, Any]:
    return {
        "pass": pass_view(mapping),
        "scan": {
            "id": scan.scan_id,
            "source": scan.source,
            "scanned_at": scan.scanned_at.isoformat(),
            "location": scan.location,
            "amount": scan.amount,
        },
        "effect": scan.effect,
    }


def _finish(session: Session, scan_id: int, status: ScanStatus, reason: str) -> None:
    scan = session.get(Scan, scan_id, with_for_update=True)
    assert scan is not None
    _set(scan, status, reason)


def _set(scan: Scan, status: ScanStatus, reason: str | None) -> None:
    scan.status = status
    scan.reason = reason
    scan.handled_at = utcnow()
