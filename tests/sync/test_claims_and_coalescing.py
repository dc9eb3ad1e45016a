"""Claims (one attempt per pass, no transaction during calls), coalescing, the 404 policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select, update

from tests.sync.ledger_rows import store
from tests.sync.test_engine import T0
from worker.config import Settings
from worker.db import Database, utcnow
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.providers.errors import TransientError
from worker.providers.memory import MemoryProvider
from worker.sync.engine import (
    EventResult,
    Outcome,
    PassBusyError,
    PassDeletedError,
    SyncContext,
    process_event,
)
from worker.sync.models import PassMapping
from worker.sync.templates import TemplateResolver

LOYALTY = {"firstName": "customer.first_name", "tier": "customer.attributes.tier"}
WELCOME = {"code": "data.code"}


def make_event(
    event_id: str,
    *,
    minutes: int = 0,
    tier: str = "gold",
    type: str = "customer.updated",
    data: dict[str, Any] | None = None,
) -> CanonicalEvent:
    return CanonicalEvent.model_validate(
        {
            "id": event_id,
            "type": type,
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "customer": {"id": "c1", "first_name": "Ada", "attributes": {"tier": tier}},
            "data": data or {},
        }
    )


def rules(*, recreate: bool | None = None) -> list[dict[str, Any]]:
    upsert: dict[str, Any] = {"upsert": "loyalty", "template": "Loyalty Card", "fields": LOYALTY}
    if recreate is not None:
        upsert["recreate_if_missing"] = recreate
    return [
        {"name": "card", "on": ["customer.updated"], "actions": [upsert]},
        {
            "name": "both",
            "on": ["customer.created"],
            "actions": [
                upsert,
                {"upsert": "welcome", "template": "Welcome Discount", "fields": WELCOME},
            ],
        },
        {"name": "expired", "on": ["membership.expired"], "actions": [{"void": "loyalty"}]},
    ]


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def build(
    make_settings: Callable[..., Settings], provider: MemoryProvider
) -> Callable[..., SyncContext]:
    def make(window_ms: int = 500, **rule_options: Any) -> SyncContext:
        sync = {"rules": rules(**rule_options), "coalesce_window_ms": window_ms}
        return SyncContext(make_settings(sync=sync), provider, TemplateResolver(provider))

    return make


def run(db: Database, row_id: int, ctx: SyncContext) -> EventResult:
    with db.session() as session:
        return process_event(session, row_id, ctx)


def ledger(db: Database) -> dict[str, tuple[str, int | None]]:
    with db.sessions() as session:
        rows = session.scalars(select(InboundEvent).order_by(InboundEvent.id)).all()
    return {r.event_id: (r.status, r.coalesced_into) for r in rows}


def the_mapping(db: Database, key: str = "loyalty") -> PassMapping:
    with db.sessions() as session:
        return session.execute(select(PassMapping).where(PassMapping.pass_key == key)).scalar_one()


def writes(provider: MemoryProvider) -> int:
    return sum(provider.calls[c] for c in ("create", "update", "void", "unvoid", "delete"))


# --- coalescing ------------------------------------------------------------------------------


def test_a_burst_for_one_customer_becomes_one_call_with_the_latest_state(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    # Given three unfinished updates of one customer, stored out of order
    ctx = build()
    ids = [store(db, make_event(e, minutes=m, tier=e)) for e, m in (("b", 2), ("a", 1), ("c", 3))]
    # When the oldest one is processed
    result = run(db, ids[1], ctx)
    # Then one create carries the newest state, and the newer events ride along
    assert [p.outcome for p in result.passes] == [Outcome.CREATED]
    assert result.coalesced == [ids[0], ids[2]]
    assert provider.calls["create"] == 1 and writes(provider) == 1
    assert provider.live()[0].fields == {"firstName": "Ada", "tier": "c"}
    assert ledger(db) == {
        "b": ("handled", ids[1]),
        "a": ("handled", None),
        "c": ("handled", ids[1]),
    }
    assert the_mapping(db).last_event_id == "c"
    # And their own deliveries find them handled: no call
    assert run(db, ids[0], ctx).already_handled and run(db, ids[2], ctx).already_handled
    assert writes(provider) == 1


def test_coalesced_fields_merge_in_order_like_the_provider(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    # Given a create with a coupon code, then a newer one without any
    ctx = build()
    first = store(db, make_event("e1", type="customer.created", minutes=1, data={"code": "X1"}))
    store(db, make_event("e2", type="customer.created", minutes=2, tier="silver"))
    # When they are applied together
    run(db, first, ctx)
    # Then each pass shows what applying them in order would show
    welcome = next(p for p in provider.live() if p.template_id == "tpl-welcome")
    loyalty = next(p for p in provider.live() if p.template_id == "tpl-loyalty")
    assert welcome.fields == {"code": "X1"}
    assert loyalty.fields == {"firstName": "Ada", "tier": "silver"}
    assert provider.calls["create"] == 2 and provider.calls["update"] == 0


def test_a_side_effect_keeps_its_place_in_the_order(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    # Given an update, a newer void, and a still newer update of one customer
    ctx = build()
    ids = [
        store(db, make_event("e1", minutes=1, tier="gold")),
        store(db, make_event("e2", minutes=2, type="membership.expired")),
        store(db, make_event("e3", minutes=3, tier="silver")),
    ]
    # When the first is processed
    result = run(db, ids[0], ctx)
    # Then nothing rides along past the void: e2 and e3 are still to come, in order
    assert result.coalesced == []
    assert ledger(db) == {"e1": ("handled", None), "e2": ("pending", None), "e3": ("pending", None)}
    assert provider.live()[0].fields["tier"] == "gold"


def test_window_zero_applies_each_event_on_its_own(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    ctx = build(window_ms=0)
    first = store(db, make_event("e1", minutes=1, tier="gold"))
    second = store(db, make_event("e2", minutes=2, tier="silver"))
    assert run(db, first, ctx).coalesced == []
    assert ledger(db)["e2"] == ("pending", None)
    assert [p.outcome for p in run(db, second, ctx).passes] == [Outcome.UPDATED]
    assert (provider.calls["create"], provider.calls["update"]) == (1, 1)


def test_dead_events_do_not_ride_along(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    ctx = build()
    first = store(db, make_event("e1", minutes=1, tier="gold"))
    dead = store(db, make_event("e2", minutes=2, tier="silver"))
    with db.session() as session:
        session.execute(update(InboundEvent).where(InboundEvent.id == dead).values(status="dead"))
    assert run(db, first, ctx).coalesced == []
    assert provider.live()[0].fields["tier"] == "gold"
    assert ledger(db)["e2"] == ("dead", None)


# --- claims ----------------------------------------------------------------------------------


def hold_claim(db: Database, *, expires_in: timedelta) -> None:
    """Make the loyalty pass look held by another attempt (unconfirmed, as a crash leaves it)."""
    with db.session() as session:
        session.execute(
            update(PassMapping).values(
                claim_token="someone-else",
                claim_expires_at=utcnow() + expires_in,
                unconfirmed_since=utcnow(),
            )
        )


def test_a_pass_held_by_another_attempt_makes_the_event_wait_without_calls(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    # Given a pass claimed by another attempt for another minute
    ctx = build(window_ms=0)
    run(db, store(db, make_event("e1", minutes=1)), ctx)
    hold_claim(db, expires_in=timedelta(minutes=1))
    calls = sum(provider.calls.values())
    # When a newer event for it is processed
    later = store(db, make_event("e2", minutes=2, tier="silver"))
    with pytest.raises(PassBusyError) as busy:
        run(db, later, ctx)
    # Then it is told to wait about that long; nothing was called or recorded
    assert 50 < busy.value.retry_after <= 60
    assert sum(provider.calls.values()) == calls
    assert ledger(db)["e2"] == ("pending", None)
    assert the_mapping(db).claim_token == "someone-else"


def test_an_expired_claim_is_taken_over_and_forces_the_write(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    # Given a crashed attempt's expired claim on a pass whose content we think is current
    ctx = build(window_ms=0)
    run(db, store(db, make_event("e1", minutes=1)), ctx)
    hold_claim(db, expires_in=-timedelta(seconds=1))
    # When an event asks for the same fields again
    result = run(db, store(db, make_event("e2", minutes=2)), ctx)
    # Then it writes anyway (the crashed attempt may have changed the pass), then trusts again
    assert [p.outcome for p in result.passes] == [Outcome.UPDATED]
    row = the_mapping(db)
    assert (row.claim_token, row.unconfirmed_since, row.last_event_id) == (None, None, "e2")
    assert [p.outcome for p in run(db, store(db, make_event("e3", minutes=3)), ctx).passes] == [
        Outcome.UNCHANGED
    ]


def test_no_database_lock_is_held_during_the_provider_call(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    # Given a provider call during which another connection writes the event's row and the
    # pass's row, giving up after 2 s if they were locked
    ctx = build(window_ms=0)
    first = store(db, make_event("e1", minutes=1))
    args = {"timeout": 2} if db.is_sqlite else {"options": "-c lock_timeout=2000"}
    other = create_engine(db.url, connect_args=args)
    original = provider.create_pass

    def create_while_writing(**kwargs: Any) -> Any:
        with other.begin() as conn:
            conn.execute(update(InboundEvent).values(last_error="written during the call"))
            conn.execute(update(PassMapping).values(updated_at=utcnow()))
        return original(**kwargs)

    provider.create_pass = create_while_writing  # type: ignore[method-assign]
    try:
        # When the event is applied
        result = run(db, first, ctx)
    finally:
        other.dispose()
    # Then the other writer was not blocked, and the event is handled
    assert [p.outcome for p in result.passes] == [Outcome.CREATED]
    assert ledger(db)["e1"] == ("handled", None)


def test_a_failure_on_the_second_pass_keeps_the_first_recorded(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    # Given an event for two passes whose second create fails
    ctx = build(window_ms=0)
    first_create = provider.create_pass
    created: list[str] = []

    def second_fails(**kwargs: Any) -> Any:
        if created:
            raise TransientError("503")
        created.append(kwargs["user_provided_id"])
        return first_create(**kwargs)

    provider.create_pass = second_fails  # type: ignore[method-assign]
    row_id = store(db, make_event("e1", type="customer.created", data={"code": "X"}))
    with pytest.raises(TransientError):
        run(db, row_id, ctx)
    # Then the loyalty pass is recorded and free; the welcome pass is free and unconfirmed
    loyalty, welcome = the_mapping(db, "loyalty"), the_mapping(db, "welcome")
    assert (loyalty.last_event_id, loyalty.claim_token, loyalty.unconfirmed_since) == (
        "e1",
        None,
        None,
    )
    assert (welcome.provider_pass_id, welcome.claim_token) == (None, None)
    assert welcome.unconfirmed_since is not None
    assert ledger(db)["e1"] == ("pending", None)
    # When it is retried, only the welcome pass is created
    provider.create_pass = first_create  # type: ignore[method-assign]
    result = run(db, row_id, ctx)
    assert [(p.pass_key, p.outcome) for p in result.passes] == [
        ("loyalty", Outcome.STALE),
        ("welcome", Outcome.CREATED),
    ]
    assert provider.calls["create"] == 2


# --- the 404 policy --------------------------------------------------------------------------


def test_a_pass_deleted_at_the_provider_is_not_recreated_when_the_rule_says_so(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    # Given a rule with recreate_if_missing: false, and its pass deleted at the provider
    ctx = build(window_ms=0, recreate=False)
    run(db, store(db, make_event("e1", minutes=1)), ctx)
    pass_id = the_mapping(db).provider_pass_id
    assert pass_id is not None
    provider.delete_externally(pass_id)
    # When an update comes
    with pytest.raises(PassDeletedError) as refused:
        run(db, store(db, make_event("e2", minutes=2, tier="silver")), ctx)
    # Then nothing is created, the reason names the pass and the rule, the mapping is as before
    assert refused.value.message == (
        f"pass {pass_id} ('loyalty') was deleted at the provider and rule card does not recreate it"
    )
    assert provider.live() == [] and provider.calls["create"] == 1
    row = the_mapping(db)
    assert (row.provider_pass_id, row.last_event_id, row.claim_token) == (pass_id, "e1", None)


def test_recreate_if_missing_belongs_to_upsert(make_settings: Callable[..., Settings]) -> None:
    from worker.sync.rules import RulesError, compile_rules

    bad = [{"name": "v", "on": ["a.b"], "actions": [{"void": "x", "recreate_if_missing": True}]}]
    sync = make_settings(sync={"rules": [*rules(), *bad]}).sync
    with pytest.raises(RulesError) as caught:
        compile_rules(sync)
    assert "rule 'v' action 1: 'recreate_if_missing' belongs to upsert, not void" in (
        caught.value.problems
    )


def test_handled_and_dead_events_are_not_applied_again(
    db: Database, build: Callable[..., SyncContext], provider: MemoryProvider
) -> None:
    ctx = build(window_ms=0)
    row_id = store(db, make_event("e1"))
    with db.session() as session:
        session.execute(update(InboundEvent).values(status=EventStatus.DEAD.value))
    assert run(db, row_id, ctx).already_handled
    assert sum(provider.calls.values()) == 0
