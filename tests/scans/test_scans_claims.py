"""Scans and the engine agree (issue 17, item 9): a scan takes the engine's claim on its pass,
a refused effect takes its counters and coupon back, a transient failure retries and counts
once. The interleavings are injected at the provider call, deterministically."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.sync.ledger_rows import store
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.providers.errors import RateLimitedError, RejectedError, TransientError
from worker.providers.memory import MemoryProvider
from worker.scans import usage as usage_module
from worker.scans.ledger import record_scans
from worker.scans.listing import ScanFilter, get_scan, list_scans
from worker.scans.models import PassUsage, Scan
from worker.scans.schema import ScanIn
from worker.scans.usage import UsageContext, process_scan
from worker.sync.engine import PassBusyError, SyncContext, process_event
from worker.sync.models import PassMapping
from worker.sync.templates import TemplateResolver

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SYNC_RULES = [
    {
        "name": "coupon",
        "on": ["customer.created", "customer.updated"],
        "actions": [
            {"upsert": "welcome", "template": "Welcome Discount", "fields": {"code": "data.code"}},
            {"upsert": "loyalty", "template": "Loyalty Card", "fields": {"tier": "data.code"}},
        ],
    }
]
USAGE = {
    "rules": [
        {"pass_key": "welcome", "mode": "redeem"},
        {
            "pass_key": "loyalty",
            "mode": "visit",
            "points_field": "scanPoints",
            "points_per_amount": 0.5,
        },
    ]
}


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db: Database) -> Settings:
    return make_settings(
        database_url=db.url, sync={"rules": SYNC_RULES, "coalesce_window_ms": 0}, usage=USAGE
    )


@pytest.fixture
def engine(settings: Settings, provider: MemoryProvider) -> SyncContext:
    return SyncContext(settings, provider, TemplateResolver(provider))


@pytest.fixture
def usage(settings: Settings, provider: MemoryProvider, engine: SyncContext) -> UsageContext:
    return UsageContext(settings, provider, engine.on)


def event(db: Database, event_id: str, minutes: int, code: str) -> int:
    """A pending ledger event that upserts both passes of customer c1; returns its id."""
    canonical = CanonicalEvent.model_validate(
        {
            "id": event_id,
            "type": "customer.updated",
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "customer": {"id": "c1"},
            "data": {"code": code},
        }
    )
    return store(db, canonical)


def apply_event(db: Database, row_id: int, ctx: SyncContext) -> None:
    with db.session() as session:
        process_event(session, row_id, ctx)


def a_scan(db: Database, scan_id: str, key: str, amount: float | None = None) -> int:
    """One recorded scan of customer c1's pass `key`; returns its ledger id."""
    scan = ScanIn(
        id=scan_id, scanned_at=T0, customer_id="c1", pass_key=key, location="Mitte", amount=amount
    )
    with db.session() as session:
        [row_id] = record_scans(session, "pos", [scan]).new_ids
    return row_id


def run_scan(db: Database, scan_id: int, ctx: UsageContext) -> str:
    with db.session() as session:
        return str(process_scan(session, scan_id, ctx).status)


def the_mapping(db: Database, key: str) -> PassMapping:
    with db.sessions() as session:
        query = select(PassMapping).where(PassMapping.pass_key == key)
        return session.execute(query).scalar_one()


def the_usage(db: Database, key: str) -> tuple[int, int, float, int | None]:
    mapping_id = the_mapping(db, key).id
    with db.sessions() as session:
        row = session.get(PassUsage, mapping_id)
        if row is None:
            return (0, 0, 0.0, None)
        return (row.uses, row.visits, row.points, row.redeemed_scan_id)


def the_scan(db: Database, scan_id: int) -> Scan:
    with db.sessions() as session:
        found = session.get(Scan, scan_id)
        assert found is not None
        return found


def during(provider: MemoryProvider, action: str, hook: Callable[[], None]) -> None:
    """Run `hook` once, in the middle of the next `action` call (after it is sent, before its
    answer is back): another worker's attempt at that moment."""
    original = getattr(provider, action)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        setattr(provider, action, original)  # once
        hook()
        return original(*args, **kwargs)

    setattr(provider, action, wrapped)


@pytest.fixture
def live_passes(db: Database, engine: SyncContext, provider: MemoryProvider) -> dict[str, str]:
    """Customer c1's coupon and loyalty card, created through the engine."""
    apply_event(db, event(db, "e0", 0, "WELCOME10"), engine)
    provider.calls.clear()
    return {key: str(the_mapping(db, key).provider_pass_id) for key in ("welcome", "loyalty")}


# --- the claim ------------------------------------------------------------------------------


def test_a_scan_during_an_event_waits_and_the_pass_ends_voided_everywhere(
    db: Database,
    engine: SyncContext,
    usage: UsageContext,
    provider: MemoryProvider,
    live_passes: dict[str, str],
) -> None:
    # Given a coupon and a scan that redeems it
    scan_id = a_scan(db, "s1", "welcome")
    outcomes: list[object] = []

    def scan_now() -> None:
        try:
            outcomes.append(run_scan(db, scan_id, usage))
        except PassBusyError as exc:
            outcomes.append(exc)

    # When the scan runs while an event's update of that coupon is at the provider
    during(provider, "update_pass", scan_now)
    apply_event(db, event(db, "e1", 1, "WELCOME20"), engine)
    # Then the scan waited (nothing counted, nothing sent, the scan still pending)
    assert [type(o) for o in outcomes] == [PassBusyError]
    assert provider.calls["void"] == 0
    assert the_usage(db, "welcome") == (0, 0, 0.0, None)
    assert the_scan(db, scan_id).status == "pending"
    # When its retry runs after the event
    assert run_scan(db, scan_id, usage) == "accepted"
    # Then the mapping and the provider agree: voided, with the event's field, claim free
    mapping = the_mapping(db, "welcome")
    stored = provider.passes[live_passes["welcome"]]
    assert (mapping.status, stored.voided, stored.fields["code"]) == ("voided", True, "WELCOME20")
    assert (mapping.claim_token, mapping.unconfirmed_since) == (None, None)
    assert provider.calls["void"] == 1
    assert the_usage(db, "welcome") == (1, 0, 0.0, scan_id)


def test_an_event_during_a_scan_waits_and_does_not_overwrite_the_void(
    db: Database,
    engine: SyncContext,
    usage: UsageContext,
    provider: MemoryProvider,
    live_passes: dict[str, str],
) -> None:
    # Given a coupon scan whose void is at the provider
    scan_id = a_scan(db, "s1", "welcome")
    event_id = event(db, "e1", 1, "WELCOME20")
    outcomes: list[object] = []

    def event_now() -> None:
        try:
            apply_event(db, event_id, engine)
            outcomes.append("applied")
        except PassBusyError as exc:
            outcomes.append(exc)

    during(provider, "set_voided", event_now)
    # When the scan finishes, then the event's retry runs
    assert run_scan(db, scan_id, usage) == "accepted"
    assert [type(o) for o in outcomes] == [PassBusyError]
    apply_event(db, event_id, engine)
    # Then both are applied once, and the mapping says what the provider says
    mapping = the_mapping(db, "welcome")
    stored = provider.passes[live_passes["welcome"]]
    assert (mapping.status, stored.voided, stored.fields["code"]) == ("voided", True, "WELCOME20")
    with db.sessions() as session:
        assert session.scalars(select(InboundEvent.status)).all() == ["handled", "handled"]


def test_a_crash_after_the_call_keeps_the_pass_claimed_until_the_lease_lapses(
    db: Database,
    usage: UsageContext,
    provider: MemoryProvider,
    live_passes: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a loyalty scan whose worker dies after the provider applied the visit
    scan_id = a_scan(db, "v1", "loyalty", amount=10.0)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("killed")

    with monkeypatch.context() as patch:
        patch.setattr(usage_module, "_record", crash)
        with pytest.raises(SystemExit):
            run_scan(db, scan_id, usage)
    # When it is retried while the dead attempt's claim lasts
    with pytest.raises(PassBusyError):
        run_scan(db, scan_id, usage)
    # And again once the claim lapsed
    with db.session() as session:
        session.execute(
            update(PassMapping).values(claim_expires_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    assert run_scan(db, scan_id, usage) == "accepted"
    # Then the visit is counted once and the same values were written twice
    assert the_usage(db, "loyalty") == (1, 1, 5.0, None)
    assert provider.passes[live_passes["loyalty"]].fields["visits"] == 1
    assert provider.passes[live_passes["loyalty"]].fields["scanPoints"] == 5.0
    assert provider.calls["update"] == 2
    assert the_mapping(db, "loyalty").claim_token is None


# --- refusals -------------------------------------------------------------------------------


def test_a_refused_void_takes_the_coupon_back_and_says_why(
    db: Database, usage: UsageContext, provider: MemoryProvider, live_passes: dict[str, str]
) -> None:
    # Given a coupon whose void the provider refuses
    scan_id = a_scan(db, "s1", "welcome")
    provider.fail_next["void"] = [
        RejectedError("pass is locked", status=409, messages=["pass is locked", "try later"])
    ]
    # When the scan is applied
    assert run_scan(db, scan_id, usage) == "refused"
    # Then the use is not counted, the coupon is not consumed, the pass stays active
    assert the_usage(db, "welcome") == (0, 0, 0.0, None)
    mapping = the_mapping(db, "welcome")
    assert (mapping.status, mapping.claim_token, mapping.unconfirmed_since) == (
        "active",
        None,
        None,
    )
    assert provider.passes[live_passes["welcome"]].voided is False
    # And the scan says so, as `passsync scans show` and GET /api/scans print it
    reason = "provider refused (HTTP 409): pass is locked; try later"
    with db.sessions() as session:
        shown = get_scan(session, scan_id)
        refused = list_scans(session, ScanFilter(status=usage_module.ScanStatus("refused")))
    assert shown is not None
    assert (shown["status"], shown["reason"], shown["outcome"]) == (
        "refused",
        reason,
        f"refused: {reason}",
    )
    assert [r["id"] for r in refused] == [scan_id]
    # And a later scan of the same coupon redeems it
    assert run_scan(db, a_scan(db, "s2", "welcome"), usage) == "accepted"
    assert provider.passes[live_passes["welcome"]].voided is True
    # And the refused scan is final: running it again changes nothing
    assert run_scan(db, scan_id, usage) == "refused"
    assert provider.calls["void"] == 2


def test_a_refused_visit_takes_its_visit_and_points_back(
    db: Database, usage: UsageContext, provider: MemoryProvider, live_passes: dict[str, str]
) -> None:
    # Given one accepted visit, then one whose update the provider refuses
    assert run_scan(db, a_scan(db, "v1", "loyalty", amount=20.0), usage) == "accepted"
    provider.fail_next["update"] = [RejectedError("unknown field scanPoints", status=422)]
    refused = a_scan(db, "v2", "loyalty", amount=8.0)
    # When it is applied
    assert run_scan(db, refused, usage) == "refused"
    # Then only the first visit counts, here and at the provider
    assert the_usage(db, "loyalty") == (1, 1, 10.0, None)
    fields = provider.passes[live_passes["loyalty"]].fields
    assert (fields["visits"], fields["scanPoints"]) == (1, 10.0)
    assert the_scan(db, refused).reason == "provider refused (HTTP 422): unknown field scanPoints"
    with db.sessions() as session:
        row = session.get(PassUsage, the_mapping(db, "loyalty").id)
        assert row is not None
        assert (row.first_used_at, row.last_used_at) == (T0, T0)


# --- transient failures ---------------------------------------------------------------------


def test_a_transient_failure_retries_without_setting_a_newer_count_back(
    db: Database, usage: UsageContext, provider: MemoryProvider, live_passes: dict[str, str]
) -> None:
    # Given a visit whose update lands at the provider but whose answer is lost (a 503)
    first = a_scan(db, "v1", "loyalty", amount=4.0)
    provider.fail_after_next["update"] = [TransientError("503 Service Unavailable", status=503)]
    with pytest.raises(TransientError):
        run_scan(db, first, usage)
    # Then the scan is still applying and the pass is free for others meanwhile
    assert the_scan(db, first).status == "applying"
    assert the_mapping(db, "loyalty").claim_token is None
    # When a second visit is applied before the first one's retry, then the retry runs
    assert run_scan(db, a_scan(db, "v2", "loyalty", amount=6.0), usage) == "accepted"
    assert run_scan(db, first, usage) == "accepted"
    # Then each visit is counted once and the pass shows both, never set back to the first
    assert the_usage(db, "loyalty") == (2, 2, 5.0, None)
    fields = provider.passes[live_passes["loyalty"]].fields
    assert (fields["visits"], fields["scanPoints"]) == (2, 5.0)
    assert the_scan(db, first).effect == {
        "void": False,
        "fields": {"visits": 2, "scanPoints": 5.0},
        "push": None,
        "counted": {"uses": 1, "visits": 1, "points": 2.0},
    }
    assert provider.calls["update"] == 3


def test_a_rate_limited_void_retries_and_redeems_once(
    db: Database, usage: UsageContext, provider: MemoryProvider, live_passes: dict[str, str]
) -> None:
    # Given a coupon scan whose void is answered 429, then its retry
    scan_id = a_scan(db, "s1", "welcome")
    provider.fail_next["void"] = [RateLimitedError("slow down", retry_after=1.0)]
    with pytest.raises(RateLimitedError):
        run_scan(db, scan_id, usage)
    assert the_usage(db, "welcome") == (1, 0, 0.0, scan_id)
    assert run_scan(db, scan_id, usage) == "accepted"
    # Then the coupon is redeemed once, the pass recorded voided and its claim free
    assert the_usage(db, "welcome") == (1, 0, 0.0, scan_id)
    mapping = the_mapping(db, "welcome")
    assert (mapping.status, mapping.claim_token) == ("voided", None)
    assert provider.passes[live_passes["welcome"]].voided is True
    assert provider.calls["void"] == 2


def test_a_scan_whose_pass_was_deleted_before_its_retry_is_refused_and_uncounted(
    db: Database, usage: UsageContext, provider: MemoryProvider, live_passes: dict[str, str]
) -> None:
    # Given a visit that failed transiently, then its pass deleted (by an event) meanwhile
    scan_id = a_scan(db, "v1", "loyalty", amount=4.0)
    provider.fail_next["update"] = [TransientError("timeout")]
    with pytest.raises(TransientError):
        run_scan(db, scan_id, usage)
    with db.session() as session:
        session.execute(
            update(PassMapping).where(PassMapping.pass_key == "loyalty").values(status="deleted")
        )
    # When the retry runs
    assert run_scan(db, scan_id, usage) == "refused"
    # Then nothing more is sent and the visit is taken back
    assert provider.calls["update"] == 1
    assert the_usage(db, "loyalty") == (0, 0, 0.0, None)
    assert the_scan(db, scan_id).reason == (
        "the pass was deleted before the scan's effect was applied"
    )
