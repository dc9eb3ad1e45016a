"""Rule actions in the engine (void, unvoid, delete, push, several passes), on both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.sync.ledger_rows import store
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.providers.errors import RejectedError, TransientError
from worker.providers.memory import MemoryProvider
from worker.sync.engine import EventResult, Outcome, SyncContext, process_event
from worker.sync.models import PassMapping
from worker.sync.templates import TemplateResolver, UnknownTemplateError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CARD = {
    "upsert": "loyalty",
    "template": "Loyalty Card",
    "fields": {"tier": "customer.attributes.tier"},
}
RULES: list[dict[str, Any]] = [
    {"name": "card", "on": ["customer.updated"], "actions": [CARD]},
    {
        "name": "tier",
        "on": ["loyalty.tier_changed"],
        "actions": [CARD, {"push": "loyalty", "message": "Now {customer.attributes.tier}"}],
    },
    {"name": "expire", "on": ["membership.expired"], "actions": [{"void": "loyalty"}]},
    {"name": "renew", "on": ["membership.renewed"], "actions": [{"unvoid": "loyalty"}]},
    {"name": "cancel", "on": ["membership.cancelled"], "actions": [{"delete": "loyalty"}]},
    {
        "name": "remind",
        "on": ["membership.reminder"],
        "actions": [{"push": "loyalty", "message": "Renew, {customer.first_name}"}],
    },
    {
        "name": "switch",
        "on": ["order.completed"],
        "actions": [
            {"upsert": "welcome", "template": "Welcome Discount"},
            {"void": "loyalty"},
        ],
    },
]


def make_event(event_id: str, kind: str, *, minutes: int = 0, tier: str = "gold") -> CanonicalEvent:
    return CanonicalEvent.model_validate(
        {
            "id": event_id,
            "type": kind,
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "customer": {"id": "c1", "first_name": "Ada", "attributes": {"tier": tier}},
        }
    )


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def ctx(make_settings: Callable[..., Settings], provider: MemoryProvider) -> SyncContext:
    settings = make_settings(sync={"rules": RULES})
    return SyncContext(settings, provider, TemplateResolver(provider))


def run(db: Database, ctx: SyncContext, event_id: str, kind: str, **kw: Any) -> EventResult:
    row_id = store(db, make_event(event_id, kind, **kw))
    with db.session() as session:
        return process_event(session, row_id, ctx)


def outcomes(result: EventResult) -> list[tuple[str, str, Outcome]]:
    return [(p.pass_key, p.action, p.outcome) for p in result.passes]


def mapping(db: Database, key: str = "loyalty") -> PassMapping:
    with db.sessions() as session:
        return session.execute(select(PassMapping).where(PassMapping.pass_key == key)).scalar_one()


def ledger(db: Database, event_id: str) -> InboundEvent:
    with db.sessions() as session:
        return session.execute(
            select(InboundEvent).where(InboundEvent.event_id == event_id)
        ).scalar_one()


def test_void_voids_once_and_a_second_void_makes_no_call(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    run(db, ctx, "e1", "customer.updated")
    assert outcomes(run(db, ctx, "e2", "membership.expired", minutes=1)) == [
        ("loyalty", "void", Outcome.VOIDED)
    ]
    assert provider.live()[0].voided is True and mapping(db).status == "voided"
    assert outcomes(run(db, ctx, "e3", "membership.expired", minutes=2)) == [
        ("loyalty", "void", Outcome.UNCHANGED)
    ]
    assert provider.calls["void"] == 1
    assert mapping(db).last_event_id == "e3"


def test_unvoid_restores_the_pass_and_an_update_keeps_it_voided(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    run(db, ctx, "e1", "customer.updated", tier="bronze")
    run(db, ctx, "e2", "membership.expired", minutes=1)
    # An update of a voided pass changes its fields, not its voided state
    assert outcomes(run(db, ctx, "e3", "customer.updated", minutes=2, tier="gold")) == [
        ("loyalty", "upsert", Outcome.UPDATED)
    ]
    assert (provider.live()[0].voided, mapping(db).status) == (True, "voided")
    assert outcomes(run(db, ctx, "e4", "membership.renewed", minutes=3)) == [
        ("loyalty", "unvoid", Outcome.UNVOIDED)
    ]
    assert (provider.live()[0].voided, mapping(db).status) == (False, "active")
    assert provider.calls["unvoid"] == 1


def test_void_of_a_pass_that_never_existed_makes_no_call(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    assert outcomes(run(db, ctx, "e1", "membership.expired")) == [
        ("loyalty", "void", Outcome.ABSENT)
    ]
    assert sum(provider.calls.values()) == 0
    assert mapping(db).provider_pass_id is None and mapping(db).status == "new"
    assert ledger(db, "e1").status == EventStatus.HANDLED


def test_older_void_after_a_newer_update_is_stale(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    run(db, ctx, "e5", "customer.updated", minutes=5)
    assert outcomes(run(db, ctx, "e3", "membership.expired", minutes=3)) == [
        ("loyalty", "void", Outcome.STALE)
    ]
    assert provider.calls["void"] == 0 and provider.live()[0].voided is False


def test_delete_removes_the_pass_and_a_later_upsert_creates_a_new_one(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    run(db, ctx, "e1", "customer.updated")
    old_id = mapping(db).provider_pass_id
    result = run(db, ctx, "e2", "membership.cancelled", minutes=1)
    assert outcomes(result) == [("loyalty", "delete", Outcome.DELETED)]
    assert result.passes[0].provider_pass_id == old_id
    assert provider.live() == []
    row = mapping(db)
    assert (row.status, row.provider_pass_id, row.content_hash) == ("deleted", None, None)
    assert outcomes(run(db, ctx, "e3", "customer.updated", minutes=2)) == [
        ("loyalty", "upsert", Outcome.CREATED)
    ]
    (stored,) = provider.live()
    assert stored.pass_id != old_id
    assert (mapping(db).status, mapping(db).provider_pass_id) == ("active", stored.pass_id)


def test_delete_of_a_pass_already_gone_at_the_provider_succeeds(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    run(db, ctx, "e1", "customer.updated")
    pass_id = mapping(db).provider_pass_id
    assert pass_id is not None
    provider.delete_externally(pass_id)
    assert outcomes(run(db, ctx, "e2", "membership.cancelled", minutes=1)) == [
        ("loyalty", "delete", Outcome.DELETED)
    ]
    assert provider.calls["delete"] == 1 and mapping(db).status == "deleted"


def test_delete_of_a_deleted_pass_makes_no_call(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    run(db, ctx, "e1", "customer.updated")
    run(db, ctx, "e2", "membership.cancelled", minutes=1)
    assert outcomes(run(db, ctx, "e3", "membership.cancelled", minutes=2)) == [
        ("loyalty", "delete", Outcome.ABSENT)
    ]
    assert provider.calls["delete"] == 1


def test_tier_change_updates_then_pushes_the_rendered_message(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    run(db, ctx, "e1", "customer.updated", tier="silver")
    result = run(db, ctx, "e2", "loyalty.tier_changed", minutes=1, tier="gold")
    assert outcomes(result) == [
        ("loyalty", "upsert", Outcome.UPDATED),
        ("loyalty", "push", Outcome.PUSHED),
    ]
    assert provider.pushes == [(provider.live()[0].pass_id, "Now gold")]
    assert ledger(db, "e2").last_error is None


def test_push_to_a_missing_pass_fails_the_action_and_sends_nothing(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    result = run(db, ctx, "e1", "membership.reminder")
    assert outcomes(result) == [("loyalty", "push", Outcome.FAILED)]
    assert provider.pushes == [] and sum(provider.calls.values()) == 0
    row = ledger(db, "e1")
    assert row.status == EventStatus.HANDLED
    assert row.last_error == "push to pass 'loyalty': the customer has no such pass"


def test_push_refused_by_the_provider_fails_only_that_action(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    provider.fail_next["push"] = [RejectedError("pass is not active", status=400)]
    result = run(db, ctx, "e1", "loyalty.tier_changed")
    assert outcomes(result) == [
        ("loyalty", "upsert", Outcome.CREATED),
        ("loyalty", "push", Outcome.FAILED),
    ]
    assert provider.pushes == [] and mapping(db).status == "active"
    assert ledger(db, "e1").last_error == (
        "push to pass 'loyalty': refused by provider: pass is not active"
    )


def test_transient_push_failure_rolls_back_and_the_retry_sends_once(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    provider.fail_next["push"] = [TransientError("503")]
    row_id = store(db, make_event("e1", "loyalty.tier_changed"))
    with pytest.raises(TransientError), db.session() as session:
        process_event(session, row_id, ctx)
    assert ledger(db, "e1").status == EventStatus.PENDING and provider.pushes == []
    with db.session() as session:
        result = process_event(session, row_id, ctx)
    # The pass created by the first attempt is adopted, not twinned
    assert outcomes(result) == [
        ("loyalty", "upsert", Outcome.ADOPTED),
        ("loyalty", "push", Outcome.PUSHED),
    ]
    assert len(provider.live()) == 1 and len(provider.pushes) == 1


def test_actions_on_several_passes_run_in_pass_key_order(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    run(db, ctx, "e1", "customer.updated")
    result = run(db, ctx, "e2", "order.completed", minutes=1)
    assert outcomes(result) == [
        ("loyalty", "void", Outcome.VOIDED),
        ("welcome", "upsert", Outcome.CREATED),
    ]
    assert sorted(p.template_id for p in provider.live()) == ["tpl-loyalty", "tpl-welcome"]


def test_a_template_recreated_under_the_same_name_is_found_again(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given the resolver cached "Loyalty Card" -> tpl-loyalty
    assert ctx.templates.resolve("Loyalty Card") == "tpl-loyalty"
    # When the template is replaced at the provider by a new one with the same name
    provider.templates = {"tpl-new": "Loyalty Card", "tpl-welcome": "Welcome Discount"}
    assert outcomes(run(db, ctx, "e1", "customer.updated")) == [
        ("loyalty", "upsert", Outcome.CREATED)
    ]
    # Then the create is retried once with the new id
    assert provider.live()[0].template_id == "tpl-new"
    assert mapping(db).template_id == "tpl-new"
    assert provider.calls["create"] == 2 and provider.calls["list_templates"] == 2


def test_a_renamed_template_fails_the_event_without_guessing(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    ctx.templates.resolve("Loyalty Card")
    provider.templates = {"tpl-new": "Loyalty Card 2026"}
    row_id = store(db, make_event("e1", "customer.updated"))
    with pytest.raises(UnknownTemplateError) as caught, db.session() as session:
        process_event(session, row_id, ctx)
    assert caught.value.message == (
        "template 'Loyalty Card' not found at provider memory (known: Loyalty Card 2026)"
    )
    assert provider.live() == []
    # The claimed row records no pass, holds no claim, and stays unconfirmed (nothing skipped)
    row = mapping(db)
    assert (row.provider_pass_id, row.status, row.last_event_id) == (None, "new", None)
    assert row.claim_token is None and row.unconfirmed_since is not None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_resolver_caches_refreshes_on_a_miss_and_after_its_max_age() -> None:
    provider = MemoryProvider()
    clock = Clock()
    resolver = TemplateResolver(provider, max_age_seconds=60, clock=clock)
    assert resolver.resolve("Loyalty Card") == "tpl-loyalty"
    assert resolver.resolve("Welcome Discount") == "tpl-welcome"
    assert provider.calls["list_templates"] == 1  # the second name came from the cache
    provider.templates["tpl-ticket"] = "Event Ticket"
    assert resolver.resolve("Event Ticket") == "tpl-ticket"  # a miss lists again
    assert provider.calls["list_templates"] == 2
    provider.templates = {"tpl-other": "Other"}
    clock.now = 59.0
    assert resolver.resolve("Loyalty Card") == "tpl-loyalty"  # still fresh
    clock.now = 60.0
    with pytest.raises(UnknownTemplateError, match="'Loyalty Card' not found at provider"):
        resolver.resolve("Loyalty Card")
    assert provider.calls["list_templates"] == 3
