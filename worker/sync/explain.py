"""A dry run of the engine: which rules an event matches and the calls it would make.

It reads the pass mappings (when a session is given) and makes no provider call. Each decision
mirrors worker.sync.engine: stale events make no call, an upsert of a live pass updates it
(or nothing, when its content hash matches), void/unvoid/delete of a missing pass do nothing,
a void of a voided pass makes no call, a push needs a live pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.inbound.schema import CanonicalEvent
from worker.sync.models import PassMapping, PassStatus
from worker.sync.rules import (
    PassPlan,
    Rule,
    RuleSet,
    Step,
    Verb,
    content_hash,
    event_document,
    plan_event,
    user_provided_id,
)


@dataclass
class PassState:
    """What the mapping row says about one pass (a fresh one when there is no row)."""

    status: str = PassStatus.NEW
    provider_pass_id: str | None = None
    template_id: str | None = None
    content_hash: str | None = None
    last_event_at: datetime | None = None
    last_event_id: str | None = None

    @property
    def live(self) -> bool:
        return bool(self.provider_pass_id) and self.status in (
            PassStatus.ACTIVE,
            PassStatus.VOIDED,
        )


@dataclass(frozen=True)
class RuleVerdict:
    name: str
    matched: bool
    reason: str


@dataclass(frozen=True)
class PlannedCall:
    """One call the engine would make (`call` is "none" or "fail" when it would make none)."""

    pass_key: str
    action: str
    call: str
    rules: tuple[str, ...]
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Explanation:
    event_id: str
    event_type: str
    customer_id: str
    rules: list[RuleVerdict]
    calls: list[PlannedCall]
    state_source: str


def load_states(
    session: Session, provider: str, customer_id: str, keys: list[str]
) -> dict[str, PassState]:
    """The mapping rows of this customer's passes, by pass key (read only, no lock)."""
    rows = session.execute(
        select(PassMapping).where(
            PassMapping.provider == provider,
            PassMapping.customer_id == customer_id,
            PassMapping.pass_key.in_(keys),
        )
    ).scalars()
    return {
        row.pass_key: PassState(
            status=row.status,
            provider_pass_id=row.provider_pass_id,
            template_id=row.template_id,
            content_hash=row.content_hash,
            last_event_at=row.last_event_at,
            last_event_id=row.last_event_id,
        )
        for row in rows
    }


def rule_verdicts(event: CanonicalEvent, rules: RuleSet) -> list[RuleVerdict]:
    doc = event_document(event)
    return [_verdict(rule, event, doc) for rule in rules.rules]


def _verdict(rule: Rule, event: CanonicalEvent, doc: dict[str, Any]) -> RuleVerdict:
    if event.type not in rule.on:
        return RuleVerdict(rule.name, False, f"not on {event.type}")
    if not rule.matches(event, doc):
        return RuleVerdict(rule.name, False, f"when is false: {rule.when_text}")
    return RuleVerdict(rule.name, True, "matched")


def explain(
    event: CanonicalEvent,
    rules: RuleSet,
    states: dict[str, PassState],
    *,
    id_prefix: str,
    state_source: str,
) -> Explanation:
    """Plan `event` against `states` (missing keys: no pass yet) without any provider call."""
    calls: list[PlannedCall] = []
    for plan in plan_event(event, rules):
        state = states.get(plan.pass_key, PassState())
        upid = user_provided_id(id_prefix, plan.pass_key, event.customer.id)
        calls.extend(_plan_calls(event, plan, state, upid))
    return Explanation(
        event.id, event.type, event.customer.id, rule_verdicts(event, rules), calls, state_source
    )


def _plan_calls(
    event: CanonicalEvent, plan: PassPlan, state: PassState, upid: str
) -> list[PlannedCall]:
    if _is_stale(state, event):
        note = f"stale: the pass already reflects event {state.last_event_id}"
        rules = tuple(name for step in plan.steps for name in step.rules)
        return [PlannedCall(plan.pass_key, "all", "none", rules, note)]
    return [_simulate(plan, step, state, upid) for step in plan.steps]


def _is_stale(state: PassState, event: CanonicalEvent) -> bool:
    if state.last_event_at is None or state.last_event_id is None:
        return False
    return (event.occurred_at, event.id) <= (state.last_event_at, state.last_event_id)


def _simulate(plan: PassPlan, step: Step, state: PassState, upid: str) -> PlannedCall:
    """The call for one step; updates `state` as the engine would after it."""

    def call(name: str, note: str = "", **detail: Any) -> PlannedCall:
        return PlannedCall(plan.pass_key, step.verb, name, step.rules, note, detail)

    if step.verb is Verb.UPSERT:
        return _simulate_upsert(plan, step, state, upid, call)
    if step.verb is Verb.PUSH:
        if not state.live:
            return call("fail", "the customer has no such pass", message=step.message)
        return call("push", pass_id=state.provider_pass_id, message=step.message)
    if not state.live:
        return call("none", f"no pass to {step.verb}")
    if step.verb is Verb.DELETE:
        pass_id, state.provider_pass_id, state.status = state.provider_pass_id, None, "deleted"
        return call("delete", pass_id=pass_id)
    target = PassStatus.VOIDED if step.verb is Verb.VOID else PassStatus.ACTIVE
    if state.status == target:
        return call("none", f"already {target}")
    state.status = target
    return call(str(step.verb), pass_id=state.provider_pass_id)


def _simulate_upsert(
    plan: PassPlan, step: Step, state: PassState, upid: str, call: Callable[..., PlannedCall]
) -> PlannedCall:
    template = plan.template_name
    if state.live:
        if state.template_id and state.content_hash == content_hash(state.template_id, step.fields):
            return call("none", "unchanged: the pass already shows these fields")
        return call("update", pass_id=state.provider_pass_id, fields=step.fields)
    state.status, state.provider_pass_id = PassStatus.ACTIVE, f"(new {plan.pass_key} pass)"
    return call("create", template=template, user_provided_id=upid, fields=step.fields)
