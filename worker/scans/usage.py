"""Apply one recorded scan as pass usage, under the same claim on the pass as the sync engine.

Like the engine (worker/sync/engine.py), this module owns short transactions of its own, so
no transaction is open while the provider is called:

1. **Claim** (short transaction, committed here): lock the scan and the pass mapping. If
   another attempt (an event or another scan) holds the pass's claim, nothing changes and
   PassBusyError says when to try again. The first attempt decides: the usage rule updates
   the local counters (a coupon is redeemed by its first valid scan only) and the effect is
   stored on the scan with what it counted. Then the scan claims the pass (token and expiry;
   "unconfirmed" when the effect voids it) and commits. A retry never decides again: it
   repeats the stored effect, with the counter fields as they stand now (never an older value
   than another scan already sent), so a visit is counted once however often the task runs.
2. **Call** the provider with no transaction open, under a lease the process's heartbeat
   renews (worker/sync/lease.py); each call only while the lease holds.
3. **Record** (the caller's transaction): fenced by the claim token, the scan accepted, the
   mapping voided, the claim released, pass.used emitted to the outbox.

A refused effect (4xx, 404) rolls the counters and the coupon back and records the scan as
`refused` with the provider's reason (committed here). A transient failure (5xx, timeout,
429) releases the claim, keeps the scan `applying` with its counters, and propagates: the
task retries with backoff and the retry repeats the stored effect.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from worker.config import Settings, UsageRule
from worker.db import utcnow
from worker.outbox.emit import emit
from worker.providers.errors import ProviderError, RejectedError
from worker.providers.port import PassProvider
from worker.scans.models import PassUsage, Scan, ScanStatus
from worker.sync.engine import ClaimLostError, PassBusyError
from worker.sync.lease import Lease, LeaseKeeper
from worker.sync.models import PassAdoption, PassMapping, PassStatus
from worker.sync.outbound import pass_view

FINAL = frozenset(
    {
        ScanStatus.ACCEPTED,
        ScanStatus.REJECTED,
        ScanStatus.UNKNOWN,
        ScanStatus.REFUSED,
        ScanStatus.FAILED,
    }
)
LIVE = (PassStatus.ACTIVE, PassStatus.VOIDED)


class ScanNotFoundError(LookupError):
    """The task names a scan that is not in the ledger."""


@dataclass(frozen=True)
class UsageContext:
    settings: Settings
    provider: PassProvider  # the default account's
    # account -> a context with that account's client (SyncContext.on); None: one account.
    on_account: Callable[[str], Any] | None = None
    # The engine's lease keeper (SyncContext.leases): one renewal thread per process.
    leases: LeaseKeeper | None = None

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
    """Claim and decide (committed), call the provider, record (the caller commits).

    Raises PassBusyError while another attempt holds the pass (nothing changed), and
    ClaimLostError when this attempt's lease ran out (the scan stays applying). A refusal is
    recorded here (committed); transient provider errors propagate after the claim is freed.
    """
    claim = _claim(session, scan_id, ctx)
    if isinstance(claim, ScanResult):
        return claim
    try:
        with _keeper(ctx).renewing(claim.lease):
            _call(ctx.provider_of(claim.account), claim, claim.lease)
    except RejectedError as exc:  # 4xx and 404: the same answer again, so no retry
        reason = refusal_reason(exc)
        _release(session, claim, refused=reason)
        return ScanResult(scan_id, ScanStatus.REFUSED, reason)
    except BaseException:
        # Transient, a lost lease, or a bug: the claim is freed if still ours; the pass stays
        # unconfirmed (a call may have landed) and the scan applying, for the retry.
        _release(session, claim)
        raise
    _record(session, claim, ctx)
    return ScanResult(scan_id, ScanStatus.ACCEPTED)


def refusal_reason(exc: ProviderError) -> str:
    """The provider's refusal in words, with its status and every reason it gave."""
    extra = [m for m in getattr(exc, "messages", []) if m and m not in exc.message]
    status = f" (HTTP {exc.status})" if exc.status else ""
    return f"provider refused{status}: " + "; ".join([exc.message, *extra])


@dataclass(frozen=True)
class _Claim:
    """This attempt's hold on the scan's pass, between the claim and the record."""

    scan_id: int
    mapping_id: int
    pass_key: str
    pass_id: str
    effect: dict[str, Any]
    account: str  # whose platform holds the pass
    token: str
    marked: bool  # this attempt set the pass unconfirmed (clear it once recorded)
    lease: Lease


@lru_cache(maxsize=8)
def _lease_keeper(claim_seconds: float) -> LeaseKeeper:
    return LeaseKeeper(claim_seconds)


def _keeper(ctx: UsageContext) -> LeaseKeeper:
    # The worker passes the engine's keeper (one renewal thread per process for both).
    return ctx.leases or _lease_keeper(ctx.settings.sync.claim_seconds)


def _claim(session: Session, scan_id: int, ctx: UsageContext) -> _Claim | ScanResult:
    scan = session.get(Scan, scan_id, with_for_update=True)
    if scan is None:
        raise ScanNotFoundError(scan_id)
    if scan.status in FINAL:
        return ScanResult(scan_id, scan.status, scan.reason, already_handled=True)
    mapping = _resolve(session, scan)
    if mapping is None or mapping.provider_pass_id is None:
        return _unmatched(session, scan)
    _wait_if_claimed(session, mapping)
    rule = ctx.rule_for(mapping.pass_key)
    if scan.status == ScanStatus.APPLYING and scan.effect is not None:
        scan.effect = _as_now(session, scan.effect, mapping, rule)
    else:
        scan.mapping_id, scan.customer_id, scan.pass_key = (
            mapping.id,
            mapping.customer_id,
            mapping.pass_key,
        )
        rejection = _apply_rule(session, scan, mapping, rule)
        if rejection is not None:
            _set(scan, ScanStatus.REJECTED, rejection)
            session.commit()
            return ScanResult(scan_id, ScanStatus.REJECTED, rejection)
        scan.status = ScanStatus.APPLYING
    since = time.monotonic()  # before the claim's expiry is computed: the safe side
    token, marked = _take(mapping, bool(scan.effect and scan.effect.get("void")), ctx)
    claim = _Claim(
        scan_id,
        mapping.id,
        mapping.pass_key,
        mapping.provider_pass_id,
        dict(scan.effect or {}),
        mapping.provider,
        token,
        marked,
        _keeper(ctx).start_lease(session.get_bind(), [(mapping.id, token)], since),  # type: ignore[arg-type]
    )
    session.commit()
    return claim


def _unmatched(session: Session, scan: Scan) -> ScanResult:
    """No live pass: unknown, or (decided earlier, the pass since deleted) refused."""
    if scan.status == ScanStatus.APPLYING:
        reason = "the pass was deleted before the scan's effect was applied"
        _uncount(session, scan)
        status = ScanStatus.REFUSED
    else:
        reason, status = "no known pass matches this scan", ScanStatus.UNKNOWN
    _set(scan, status, reason)
    session.commit()
    return ScanResult(scan.id, status, reason)


def _wait_if_claimed(session: Session, mapping: PassMapping) -> None:
    """PassBusyError (and nothing changed) while another attempt's claim on the pass lasts."""
    now = utcnow()
    expires = mapping.claim_expires_at
    if mapping.claim_token is not None and expires is not None and expires > now:
        key, wait = mapping.pass_key, (expires - now).total_seconds()
        session.rollback()
        raise PassBusyError(f"pass {key!r} is being synced", retry_after=wait)


def _take(mapping: PassMapping, voids: bool, ctx: UsageContext) -> tuple[str, bool]:
    """Claim the pass as the engine does; a void marks it unconfirmed until recorded."""
    now = utcnow()
    token = str(uuid.uuid4())
    mapping.claim_token = token
    mapping.claim_expires_at = now + timedelta(seconds=ctx.settings.sync.claim_seconds)
    marked = voids and mapping.unconfirmed_since is None
    if marked:
        mapping.unconfirmed_since = now
    return token, marked


def _as_now(
    session: Session, effect: dict[str, Any], mapping: PassMapping, rule: UsageRule | None
) -> dict[str, Any]:
    """The stored effect, its counter fields as they stand now (another scan may have sent
    newer values meanwhile; sending ours again would set the pass back)."""
    usage = session.get(PassUsage, mapping.id, with_for_update=True)
    if usage is None or not effect.get("fields") or rule is None or rule.mode != "visit":
        return effect
    return effect | {"fields": _visit_fields(usage, rule)}


def _resolve(session: Session, scan: Scan) -> PassMapping | None:
    """The live pass the scan names (of any account), by pass id, customer + key, or barcode
    value; locked and read afresh."""
    query = select(PassMapping).where(PassMapping.status.in_(LIVE))
    if scan.mapping_id is not None:
        query = query.where(PassMapping.id == scan.mapping_id)
    elif scan.provider_pass_id:
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
    found = session.scalars(
        query.with_for_update().limit(1).execution_options(populate_existing=True)
    )
    return found.first()


def _passes_with_barcode(barcode: str | None) -> Any:
    # Barcode values the provider told us about in pass_created callbacks.
    return select(PassAdoption.provider_pass_id).where(PassAdoption.barcode == barcode)


def _apply_rule(
    session: Session, scan: Scan, mapping: PassMapping, rule: UsageRule | None
) -> str | None:
    """Update the counters and store the effect with what it counted (to roll back a
    refusal); a rejection reason when the scan is invalid."""
    usage = session.get(PassUsage, mapping.id, with_for_update=True)
    if usage is None:
        usage = PassUsage(mapping_id=mapping.id, uses=0, visits=0, points=0.0)
        session.add(usage)
    effect: dict[str, Any] = {"void": False, "fields": {}, "push": None}
    counted: dict[str, Any] = {"uses": 1}
    if rule is not None and rule.mode == "redeem":
        if usage.redeemed_scan_id is not None or mapping.status == PassStatus.VOIDED:
            return "coupon already redeemed"
        usage.redeemed_scan_id = scan.id
        effect["void"] = counted["redeemed"] = True
    elif rule is not None and rule.mode == "visit":
        points = (scan.amount or 0.0) * rule.points_per_amount
        usage.visits += 1
        usage.points += points
        counted |= {"visits": 1, "points": points}
        effect["fields"] = _visit_fields(usage, rule)
    if rule is not None and rule.push:
        effect["push"] = rule.push.replace("{location}", scan.location or "")
    usage.uses += 1
    usage.first_used_at = usage.first_used_at or scan.scanned_at
    usage.last_used_at = scan.scanned_at
    scan.effect = effect | {"counted": counted}
    return None


def _visit_fields(usage: PassUsage, rule: UsageRule) -> dict[str, Any]:
    """The pass fields that mirror the counters (absolute values: repeating them is safe)."""
    fields: dict[str, Any] = {}
    if rule.visits_field:
        fields[rule.visits_field] = usage.visits
    if rule.points_field:
        fields[rule.points_field] = round(usage.points, 2)
    return fields


def _uncount(session: Session, scan: Scan) -> None:
    """Take back what this scan counted: its use, visit and points, the coupon it redeemed."""
    if scan.mapping_id is None:
        return
    usage = session.get(PassUsage, scan.mapping_id, with_for_update=True)
    if usage is None:
        return
    counted = (scan.effect or {}).get("counted") or {"uses": 1}  # a scan stored before 'counted'
    usage.uses = max(0, usage.uses - int(counted.get("uses", 0)))
    usage.visits = max(0, usage.visits - int(counted.get("visits", 0)))
    usage.points -= float(counted.get("points", 0.0))
    if usage.redeemed_scan_id == scan.id:
        usage.redeemed_scan_id = None
    first, last = session.execute(
        select(func.min(Scan.scanned_at), func.max(Scan.scanned_at)).where(
            Scan.mapping_id == scan.mapping_id,
            Scan.id != scan.id,
            Scan.status.in_([ScanStatus.ACCEPTED, ScanStatus.APPLYING]),
        )
    ).one()
    usage.first_used_at, usage.last_used_at = first, last


def _call(provider: PassProvider, claim: _Claim, lease: Lease) -> None:
    effect, pass_id = claim.effect, claim.pass_id
    if effect.get("fields"):
        _hold(lease, claim)
        provider.update_pass(pass_id, dict(effect["fields"]))
    if effect.get("push"):
        _hold(lease, claim)
        # Before the void: the provider refuses pushes to a voided pass (§3.2). A thank-you
        # that could not be sent does not undo the use.
        with contextlib.suppress(ProviderError):
            provider.send_push(pass_id, str(effect["push"]))
    if effect.get("void"):
        _hold(lease, claim)
        provider.set_voided(pass_id, True)


def _hold(lease: Lease, claim: _Claim) -> None:
    """Call nothing once the lease may have run out (another attempt may hold the pass)."""
    if not lease.valid():
        raise ClaimLostError(
            f"the claim on pass {claim.pass_key!r} could not be renewed", retry_after=0.0
        )


def _locked(session: Session, claim: _Claim) -> tuple[Scan, PassMapping | None]:
    """The scan and its mapping rows, locked (scan first, as in the claim) and read afresh."""
    scan = session.execute(
        select(Scan)
        .where(Scan.id == claim.scan_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    mapping = session.execute(
        select(PassMapping)
        .where(PassMapping.id == claim.mapping_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    return scan, mapping


def _record(session: Session, claim: _Claim, ctx: UsageContext) -> None:
    """The scan accepted and the pass voided if it was, fenced by our claim token."""
    scan, mapping = _locked(session, claim)
    if mapping is None or mapping.claim_token != claim.token:
        session.rollback()
        raise ClaimLostError(
            f"the claim on pass {claim.pass_key!r} expired and was taken over", retry_after=0.0
        )
    if claim.effect.get("void"):
        mapping.status = PassStatus.VOIDED
    mapping.claim_token = mapping.claim_expires_at = None
    if claim.marked:
        mapping.unconfirmed_since = None
    scan.effect = claim.effect  # as sent (a retry sends the counters as they stand)
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


def _release(session: Session, claim: _Claim, *, refused: str | None = None) -> None:
    """After a failure: free the claim if still ours; a refusal also takes the counters back
    and records the scan refused. Committed here."""
    session.rollback()
    scan, mapping = _locked(session, claim)
    if mapping is not None and mapping.claim_token == claim.token:
        mapping.claim_token = mapping.claim_expires_at = None
        if refused is not None and claim.marked:
            mapping.unconfirmed_since = None  # refused: nothing reached the pass
    if refused is not None and scan.status == ScanStatus.APPLYING:
        _uncount(session, scan)
        _set(scan, ScanStatus.REFUSED, refused)
    session.commit()


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


def _set(scan: Scan, status: ScanStatus, reason: str | None) -> None:
    scan.status = status
    scan.reason = reason
    scan.handled_at = utcnow()
