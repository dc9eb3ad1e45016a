"""Several accounts at once: each rule's passes go to its account's client, template cache
and rows; a rule using an action its account's platform lacks is refused before any run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from tests.sync.ledger_rows import store
from worker.config import Settings
from worker.db import Database
from worker.inbound.schema import CanonicalEvent
from worker.outbox.models import OutboxEvent
from worker.providers import registry
from worker.providers.memory import MemoryProvider
from worker.providers.port import PassProvider
from worker.sync.engine import Outcome, SyncContext, process_event
from worker.sync.models import PassMapping
from worker.sync.rules import RulesError, compile_rules
from worker.sync.templates import TemplateResolver

KIND = registry.default_kind()
RULES: list[dict[str, Any]] = [
    {
        "name": "card",
        "on": ["customer.created"],
        "actions": [
            {
                "upsert": "loyalty",
                "account": "brand_b",
                "template": "Loyalty Card",
                "fields": {"firstName": "customer.first_name"},
            },
        ],
    },
    {
        "name": "coupon",
        "on": ["customer.created"],
        "actions": [{"upsert": "welcome", "template": "Welcome Discount", "fields": {}}],
    },
    {"name": "bye", "on": ["customer.deleted"], "actions": [{"void": "loyalty"}]},
]


def two_accounts(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        providers={"brand_a": {"kind": KIND}, "brand_b": {"kind": KIND}},
        sync={"default_account": "brand_a", "rules": RULES},
    )


def created(event_id: str) -> CanonicalEvent:
    return CanonicalEvent.model_validate(
        {
            "id": event_id,
            "type": "customer.created",
            "occurred_at": "2026-12-04T10:00:00+00:00",
            "customer": {"id": "cus_1", "first_name": "Ada"},
        }
    )


def test_each_pass_goes_to_its_accounts_client_and_rows_carry_the_account(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    # Given two accounts of one platform: the card on brand_b, the coupon on the default
    settings = two_accounts(make_settings)
    brand_a, brand_b = MemoryProvider(), MemoryProvider()
    connected: list[str] = []

    def connect(account: str) -> tuple[PassProvider, TemplateResolver]:
        connected.append(account)
        assert account == "brand_b"
        return brand_b, TemplateResolver(brand_b)

    ctx = SyncContext(settings, brand_a, TemplateResolver(brand_a), connect=connect)
    # When one event asks for both passes
    with db.session() as session:
        result = process_event(session, store(db, created("e1")), ctx)
    # Then each account's client made its own pass, and brand_b's client was built once
    assert {p.pass_key: p.outcome for p in result.passes} == {
        "loyalty": Outcome.CREATED,
        "welcome": Outcome.CREATED,
    }
    assert [p.template_id for p in brand_a.live()] == ["tpl-welcome"]
    assert [p.template_id for p in brand_b.live()] == ["tpl-loyalty"]
    assert connected == ["brand_b"]
    with db.sessions() as session:
        rows = {m.pass_key: (m.provider, m.kind) for m in session.scalars(select(PassMapping))}
        payloads = [e.payload for e in session.scalars(select(OutboxEvent))]
    # (the kind is the client's: the in-memory fake here, the platform's kind in production)
    assert rows == {"loyalty": ("brand_b", "memory"), "welcome": ("brand_a", "memory")}
    # And the outbound events name the account and its platform
    issued = {p["pass_key"]: p for p in payloads}
    assert {k: (v["account"], v["provider"]) for k, v in issued.items()} == {
        "loyalty": ("brand_b", "memory"),
        "welcome": ("brand_a", "memory"),
    }


def test_a_rule_on_an_unconfigured_account_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        sync={
            "rules": [
                {
                    "name": "card",
                    "on": ["customer.created"],
                    "actions": [{"upsert": "loyalty", "account": "nope", "template": "T"}],
                }
            ]
        }
    )
    with pytest.raises(RulesError) as caught:
        compile_rules(settings.sync, registry.capabilities(settings))
    assert caught.value.problems == [
        f"rule 'card': account 'nope' is not configured under providers (configured: {KIND})"
    ]


def test_an_action_the_accounts_platform_lacks_is_refused_by_the_rules_check(
    make_settings: Callable[..., Settings],
) -> None:
    settings = two_accounts(make_settings)
    # a platform that can void nothing (capabilities come from the account's descriptor)
    lacking = {"brand_a": ("Acme", frozenset({"void"})), "brand_b": ("Acme", frozenset())}
    with pytest.raises(RulesError) as caught:
        compile_rules(settings.sync, lacking)
    assert caught.value.problems == [
        "rule 'bye': void of pass 'loyalty' needs 'void', which account 'brand_b' (Acme) "
        "does not support"
    ]
    # the same rules pass where the platform supports it
    assert (
        compile_rules(settings.sync, registry.capabilities(settings)).account_of("loyalty")
        == "brand_b"
    )


def test_one_pass_key_on_two_accounts_is_refused(make_settings: Callable[..., Settings]) -> None:
    rules = [
        *RULES,
        {
            "name": "card_again",
            "on": ["customer.updated"],
            "actions": [{"upsert": "loyalty", "template": "Loyalty Card"}],
        },
    ]
    settings = make_settings(
        providers={"brand_a": {"kind": KIND}, "brand_b": {"kind": KIND}},
        sync={"default_account": "brand_a", "rules": rules},
    )
    with pytest.raises(RulesError) as caught:
        compile_rules(settings.sync, registry.capabilities(settings))
    assert caught.value.problems == [
        "rule 'card_again': pass 'loyalty' is on account 'brand_a', another rule puts it on "
        "'brand_b'"
    ]


def test_account_is_only_for_upsert(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        sync={
            "rules": [
                {"name": "a", "on": ["x.y"], "actions": [{"upsert": "k", "template": "T"}]},
                {"name": "b", "on": ["x.y"], "actions": [{"void": "k", "account": KIND}]},
            ]
        }
    )
    with pytest.raises(RulesError) as caught:
        compile_rules(settings.sync)
    assert caught.value.problems == [
        "rule 'b' action 1: 'account' belongs to upsert, not void (it follows the pass key)"
    ]
