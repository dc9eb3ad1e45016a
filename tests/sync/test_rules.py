"""Rules: compiled and checked at start-up (one line per problem), then planned per event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.config import ConfigError, Settings, SyncSettings
from worker.inbound.schema import CanonicalEvent
from worker.providers.port import ProviderTemplate
from worker.sync.rules import (
    RulesError,
    RuleSet,
    Step,
    Verb,
    compile_rules,
    desired_passes,
    known_path,
    missing_templates,
    plan_event,
)

CONFIG_YAML = Path(__file__).resolve().parents[2] / "config.yaml"


def event(kind: str, **attributes: Any) -> CanonicalEvent:
    data = attributes.pop("data", {})
    return CanonicalEvent.model_validate(
        {
            "id": "e1",
            "type": kind,
            "occurred_at": datetime(2026, 3, 1, tzinfo=UTC).isoformat(),
            "customer": {"id": "c1", "first_name": "Ada", "attributes": attributes},
            "data": data,
        }
    )


def rules_from(text: str) -> RuleSet:
    return compile_rules(SyncSettings.model_validate(yaml.safe_load(text)))


def problems_of(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        rules_from(text)
    return caught.value.problems


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return compile_rules(
        SyncSettings.model_validate(yaml.safe_load(CONFIG_YAML.read_text())["sync"])
    )


def verbs(plans: list[Any]) -> list[tuple[str, list[Verb]]]:
    return [(p.pass_key, [s.verb for s in p.steps]) for p in plans]


def test_shipped_config_compiles_with_every_example(shipped: RuleSet) -> None:
    assert [r.name for r in shipped.rules] == [
        "loyalty_card",
        "first_order_welcome_discount",
        "repeat_customer_loyalty_card",
        "tier_changed",
        "points_changed",
        "membership_expired",
        "membership_renewed",
        "ticket_issued",
        "ticket_cancelled",
    ]
    assert shipped.templates == {
        "loyalty": "Loyalty Card",
        "welcome": "Welcome Discount",
        "ticket": "Event Ticket",
    }


def test_first_time_buyer_gets_the_welcome_discount(shipped: RuleSet) -> None:
    (plan,) = plan_event(event("order.completed", orders_count=1), shipped)
    assert (plan.pass_key, plan.template_name) == ("welcome", "Welcome Discount")
    assert plan.steps == (
        Step(
            Verb.UPSERT,
            ("first_order_welcome_discount",),
            {"firstName": "Ada", "couponCode": "WELCOME10"},
        ),
    )


def test_coupon_code_from_the_event_wins_over_the_default(shipped: RuleSet) -> None:
    (plan,) = plan_event(
        event("order.completed", orders_count=1, data={"coupon_code": "HELLO5"}), shipped
    )
    assert plan.steps[0].fields["couponCode"] == "HELLO5"


def test_repeat_customer_gets_the_loyalty_card(shipped: RuleSet) -> None:
    (plan,) = plan_event(event("order.completed", orders_count=3, tier="silver"), shipped)
    assert (plan.pass_key, plan.template_name) == ("loyalty", "Loyalty Card")
    assert plan.steps[0].fields == {"firstName": "Ada", "tier": "silver"}


def test_order_without_a_count_matches_no_rule(shipped: RuleSet) -> None:
    assert plan_event(event("order.completed"), shipped) == []


def test_tier_change_updates_the_card_then_pushes(shipped: RuleSet) -> None:
    (plan,) = plan_event(event("loyalty.tier_changed", tier="gold"), shipped)
    assert verbs([plan]) == [("loyalty", [Verb.UPSERT, Verb.PUSH])]
    assert plan.steps[1].message == "Congratulations Ada, you are now gold!"


def test_points_change_updates_the_card(shipped: RuleSet) -> None:
    (plan,) = plan_event(event("loyalty.points_changed", points=120), shipped)
    assert plan.steps == (
        Step(Verb.UPSERT, ("points_changed",), {"firstName": "Ada", "points": 120}),
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("membership.expired", [("loyalty", [Verb.VOID])]),
        ("membership.renewed", [("loyalty", [Verb.UNVOID])]),
        ("ticket.cancelled", [("ticket", [Verb.DELETE])]),
        ("ticket.purchased", [("ticket", [Verb.UPSERT])]),
        ("customer.deleted", []),
    ],
)
def test_lifecycle_events_plan_their_action(
    shipped: RuleSet, kind: str, expected: list[Any]
) -> None:
    assert verbs(plan_event(event(kind), shipped)) == expected


def test_plans_come_in_pass_key_order_and_upserts_of_one_pass_merge() -> None:
    rules = rules_from(
        """
        rules:
          - name: first
            on: [a.b]
            actions:
              - upsert: zeta
                template: Z
                fields: {x: customer.first_name, y: "'one'"}
              - upsert: alpha
                template: A
          - name: second
            on: [a.b]
            actions:
              - upsert: zeta
                template: Z
                fields: {y: "'two'", n: 3}
        """
    )
    plans = plan_event(event("a.b"), rules)
    assert [p.pass_key for p in plans] == ["alpha", "zeta"]
    assert plans[1].steps == (
        Step(Verb.UPSERT, ("first", "second"), {"x": "Ada", "y": "two", "n": 3}),
    )


def test_yaml_on_key_is_read_although_yaml_makes_it_true() -> None:
    rules = rules_from(
        "rules: [{name: r, on: [a.b], actions: [{void: p}, {upsert: p, template: T}]}]"
    )
    assert rules.rules[0].on == frozenset({"a.b"})


def test_default_settings_keep_the_loyalty_card_on_customer_events(
    make_settings: Callable[..., Settings],
) -> None:
    rules = compile_rules(make_settings().sync)
    (desired,) = desired_passes(event("customer.updated", tier="gold", points=7), rules)
    assert (desired.pass_key, desired.template_name) == ("loyalty", "Loyalty Card")
    assert desired.fields == {"firstName": "Ada", "tier": "gold", "points": 7}


def test_passes_shorthand_compiles_into_a_rule_and_replaces_the_default() -> None:
    rules = rules_from(
        "passes: {member: {template: Member Card, fields: {name: customer.first_name}}}"
    )
    assert [(r.name, sorted(r.on)) for r in rules.rules] == [
        ("passes.member", ["customer.created", "customer.updated"])
    ]
    (desired,) = desired_passes(event("customer.created"), rules)
    assert (desired.pass_key, desired.fields) == ("member", {"name": "Ada"})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "rules: [{name: r, on: [a.b], when: 'customer.tier ==', actions: [{void: p}]}]",
            "rule 'r' when: bad expression 'customer.tier ==': expected a value at position 17",
        ),
        (
            "rules: [{name: r, on: [a.b], when: 'customer.tier == 1', actions: [{void: p}]}]",
            "rule 'r' when: unknown event field 'customer.tier' in 'customer.tier == 1'",
        ),
        (
            "rules: [{name: r, on: [a.b], actions: [{upsert: p, template: T, fields: {c: GOLD}}]}]",
            "rule 'r' action 1 field 'c': unknown event field 'GOLD' in 'GOLD' "
            '(a text constant is quoted: "GOLD")',
        ),
        (
            "rules: [{name: r, on: [a.b], actions: [{push: p, message: 'Hi {customer.nam}'}]}]",
            "rule 'r' action 1 message: unknown event field 'customer.nam' in 'Hi {customer.nam}'",
        ),
        (
            "rules: [{name: r, on: [a.b], actions: [{delete: ticket}]}]",
            "rule 'r': delete of unknown pass key 'ticket' (no rule upserts it)",
        ),
        (
            "rules: [{name: r, on: [a.b], actions: [{void: p, delete: p}]}]",
            "rule 'r' action 1: needs exactly one of upsert/void/unvoid/delete/push, found 2",
        ),
        (
            "rules: [{name: r, on: [a.b], actions: [{upsert: p}]}]",
            "rule 'r' action 1: upsert needs a 'template' (the template's name)",
        ),
        (
            "rules: [{name: r, on: [a.b], actions: [{push: p}]}]",
            "rule 'r' action 1: push needs a 'message'",
        ),
        (
            "rules: [{name: r, on: [a.b], actions: [{void: p, template: T}]}]",
            "rule 'r' action 1: 'template' and 'fields' belong to upsert, not void",
        ),
        (
            "rules: [{name: r, on: [Order], actions: [{void: p}]}]",
            "rule 'r': event type 'Order' is not dotted lower case",
        ),
        (
            "rules: [{name: r, on: [], actions: []}]",
            "rule 'r': 'on' must list at least one event type",
        ),
        (
            "rules: [{name: r, on: [a.b], actions: [{upsert: my-pass, template: T}]}]",
            "rule 'r' action 1: pass key 'my-pass' must match",
        ),
    ],
)
def test_each_problem_is_one_line_naming_the_rule_and_the_text(text: str, problem: str) -> None:
    problems = problems_of(text)
    assert any(line.startswith(problem) for line in problems), problems
    assert all("\n" not in line for line in problems)


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        """
        rules:
          - {name: a, on: [x.y], when: "nope ==", actions: [{upsert: p, template: T}]}
          - {name: a, on: [x.y], actions: [{upsert: p, template: Other}]}
        """
    )
    assert problems == [
        "rule 'a' when: bad expression 'nope ==': expected a value at position 8, found the end",
        "rule 'a': the name is used twice",
        "rule 'a': pass 'p' uses template 'Other', another rule uses 'T'",
    ]


def test_rules_error_is_a_config_error_with_one_line_per_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        rules_from("rules: [{name: r, on: [a.b], actions: [{void: x}, {delete: y}]}]")
    assert str(caught.value).splitlines() == [
        "rule 'r': void of unknown pass key 'x' (no rule upserts it)",
        "rule 'r': delete of unknown pass key 'y' (no rule upserts it)",
    ]


@pytest.mark.parametrize(
    ("path", "known"),
    [
        (("customer", "first_name"), True),
        (("customer", "attributes", "anything", "deep"), True),
        (("data", "anything"), True),
        (("occurred_at",), True),
        (("customer", "tier"), False),
        (("attributes", "tier"), False),
        (("customer", "first_name", "x"), False),
    ],
)
def test_paths_are_checked_against_the_canonical_schema(path: tuple[str, ...], known: bool) -> None:
    assert known_path(path) is known


def test_missing_templates_names_each_rule_and_what_the_provider_has(shipped: RuleSet) -> None:
    available = [
        ProviderTemplate(template_id="t1", name="Loyalty Card"),
        ProviderTemplate(template_id="t2", name="Welcome Discount"),
    ]
    assert missing_templates(shipped, available) == [
        "rule 'ticket_issued': template 'Event Ticket' not found at provider "
        "(known: Loyalty Card, Welcome Discount)"
    ]
    assert (
        missing_templates(
            shipped, [*available, ProviderTemplate(template_id="t3", name="Event Ticket")]
        )
        == []
    )
