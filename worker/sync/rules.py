"""Declarative rules: compiled and checked once at start-up, then matched against each event.

A rule names event types, an optional condition and actions (upsert, void, unvoid, delete,
push) on pass keys. The old `sync.passes` shape compiles into one upsert rule per pass.
Every problem found while compiling is one line naming the rule and the offending text.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, get_args

from pydantic import BaseModel

from worker.config import NAME_RE, ConfigError, PassRule, RuleAction, SyncRule, SyncSettings
from worker.expressions import (
    Expr,
    ExpressionError,
    Message,
    evaluate,
    parse,
    parse_message,
    paths,
    truthy,
)
from worker.inbound.schema import EVENT_TYPE_PATTERN, CanonicalEvent
from worker.providers.port import ProviderTemplate

SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
EVENT_TYPE_RE = re.compile(EVENT_TYPE_PATTERN)


class Verb(StrEnum):
    UPSERT = "upsert"
    VOID = "void"
    UNVOID = "unvoid"
    DELETE = "delete"
    PUSH = "push"


class RulesError(ConfigError):
    """The rules are invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Action:
    rule: str
    verb: Verb
    pass_key: str
    template: str | None = None
    fields: tuple[tuple[str, Expr], ...] = ()
    message: Message | None = None
    recreate: bool = True  # upsert: a pass deleted at the provider is created anew
    account: str | None = None  # upsert: the account holding the pass (None: the default)


@dataclass(frozen=True)
class Rule:
    name: str
    on: frozenset[str]
    when: Expr | None
    actions: tuple[Action, ...]
    when_text: str | None = None

    def matches(self, event: CanonicalEvent, doc: dict[str, Any]) -> bool:
        if event.type not in self.on:
            return False
        return self.when is None or truthy(evaluate(self.when, doc))


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    templates: dict[str, str]  # pass key -> template name (one per key, checked)
    accounts: dict[str, str] = field(default_factory=dict)  # pass key -> account (checked)
    default_account: str = ""

    def template_names(self) -> set[str]:
        return set(self.templates.values())

    def account_of(self, pass_key: str) -> str:
        """The account holding this pass key's passes (its upserts name it, else the default)."""
        return self.accounts.get(pass_key, self.default_account)

    def templates_by_account(self) -> dict[str, dict[str, list[str]]]:
        """account -> template name -> the rules using it there."""
        found: dict[str, dict[str, list[str]]] = {}
        for rule in self.rules:
            for action in rule.actions:
                if action.template is not None:
                    names = found.setdefault(self.account_of(action.pass_key), {})
                    names.setdefault(action.template, []).append(rule.name)
        return found


@dataclass(frozen=True)
class Step:
    """One action made concrete for one event: the fields or the message are evaluated."""

    verb: Verb
    rules: tuple[str, ...]
    fields: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    recreate: bool = True


@dataclass(frozen=True)
class PassPlan:
    """What one event asks of one pass, steps in rule order."""

    pass_key: str
    template_name: str | None
    steps: tuple[Step, ...]

    @property
    def upsert_only(self) -> bool:
        """Only state, no side effect: such plans of consecutive events can be merged."""
        return all(step.verb is Verb.UPSERT for step in self.steps)


@dataclass(frozen=True)
class DesiredPass:
    """The fields an event's upsert asks for (the demo's expectation of the provider)."""

    pass_key: str
    template_name: str
    fields: dict[str, Any]


# What an account's platform must support for each verb (upsert: every platform).
CAPABILITY_OF = {Verb.VOID: "void", Verb.UNVOID: "unvoid", Verb.DELETE: "delete", Verb.PUSH: "push"}
# account -> (its platform's title, what that platform supports)
Capabilities = Mapping[str, tuple[str, frozenset[str]]]


def compile_rules(
    sync: SyncSettings, capabilities: Capabilities | None = None, *, default_account: str = ""
) -> RuleSet:
    """Compile `sync.rules` and the `sync.passes` shorthand; RulesError lists every problem.

    With the accounts' capabilities (worker.providers.registry.capabilities), every account a
    rule uses must be configured and its platform must support each action on its passes.
    `default_account` stands in when the settings name none (SyncSettings built alone).
    """
    problems: list[str] = []
    sources = [*sync.rules, *(_from_pass(key, rule) for key, rule in sync.passes.items())]
    rules = [_compile_rule(source, problems) for source in sources]
    _check_names(sources, problems)
    templates = _check_pass_keys(rules, problems)
    default = sync.default_account or default_account
    accounts = _check_accounts(rules, default, capabilities, problems)
    if problems:
        raise RulesError(problems)
    return RuleSet(tuple(rules), templates, accounts, default)


def _check_accounts(
    rules: list[Rule], default: str, capabilities: Capabilities | None, problems: list[str]
) -> dict[str, str]:
    accounts: dict[str, str] = {}
    for rule in rules:
        for action in rule.actions:
            if action.verb is not Verb.UPSERT:
                continue
            chosen = action.account or default
            known = accounts.setdefault(action.pass_key, chosen)
            if known != chosen:
                problems.append(
                    f"rule {rule.name!r}: pass {action.pass_key!r} is on account {chosen!r}, "
                    f"another rule puts it on {known!r}"
                )
    if capabilities is None:
        return accounts
    configured = ", ".join(capabilities) or "none"
    for rule in rules:
        for action in rule.actions:
            account = accounts.get(action.pass_key)
            if account is None:
                continue  # a key nobody upserts: reported by _check_pass_keys
            if account not in capabilities:
                if action.verb is Verb.UPSERT:
                    problems.append(
                        f"rule {rule.name!r}: account {account!r} is not configured under "
                        f"providers (configured: {configured})"
                    )
                continue
            title, supported = capabilities[account]
            needed = CAPABILITY_OF.get(action.verb)
            if needed is not None and needed not in supported:
                problems.append(
                    f"rule {rule.name!r}: {action.verb} of pass {action.pass_key!r} needs "
                    f"{needed!r}, which account {account!r} ({title}) does not support"
                )
    return accounts


def _from_pass(key: str, rule: PassRule) -> SyncRule:
    action = RuleAction(
        upsert=key, template=rule.template, fields=dict(rule.fields), account=rule.account
    )
    return SyncRule(name=f"passes.{key}", on=rule.event_types, actions=[action])


def _check_names(sources: list[SyncRule], problems: list[str]) -> None:
    seen: set[str] = set()
    for source in sources:
        if not source.name.strip():
            problems.append("a rule has an empty name")
        elif source.name in seen:
            problems.append(f"rule {source.name!r}: the name is used twice")
        seen.add(source.name)


def _compile_rule(source: SyncRule, problems: list[str]) -> Rule:
    where = f"rule {source.name!r}"
    if not source.on:
        problems.append(f"{where}: 'on' must list at least one event type")
    for event_type in source.on:
        if not EVENT_TYPE_RE.match(event_type):
            problems.append(f"{where}: event type {event_type!r} is not dotted lower case")
    when = _compile_when(where, source.when, problems)
    if not source.actions:
        problems.append(f"{where}: 'actions' must list at least one action")
    actions = [
        _compile_action(f"{where} action {i + 1}", source.name, a, problems)
        for i, a in enumerate(source.actions)
    ]
    when_text = source.when if not isinstance(source.when, bool) else str(source.when).lower()
    return Rule(source.name, frozenset(source.on), when, tuple(a for a in actions if a), when_text)


def _compile_when(where: str, when: str | bool | None, problems: list[str]) -> Expr | None:
    if when is None:
        return None
    if isinstance(when, bool):
        return parse("true" if when else "false")
    return _expression(f"{where} when", when, problems)


def _compile_action(
    where: str, rule: str, source: RuleAction, problems: list[str]
) -> Action | None:
    verbs = [(Verb(v), getattr(source, v)) for v in Verb if getattr(source, v) is not None]
    if len(verbs) != 1:
        names = "/".join(v.value for v in Verb)
        problems.append(f"{where}: needs exactly one of {names}, found {len(verbs)}")
        return None
    verb, pass_key = verbs[0]
    if not NAME_RE.match(pass_key):
        problems.append(f"{where}: pass key {pass_key!r} must match {NAME_RE.pattern}")
    _check_options(where, verb, source, problems)
    fields = tuple(
        (name, _field(f"{where} field {name!r}", value, problems))
        for name, value in source.fields.items()
    )
    message = _message(where, source.message, problems) if verb is Verb.PUSH else None
    recreate = source.recreate_if_missing is not False
    # Kept even when something above is wrong, so the pass-key checks still see it.
    return Action(rule, verb, pass_key, source.template, fields, message, recreate, source.account)


def _check_options(where: str, verb: Verb, source: RuleAction, problems: list[str]) -> None:
    if verb is Verb.UPSERT and not (source.template or "").strip():
        problems.append(f"{where}: upsert needs a 'template' (the template's name)")
    if verb is not Verb.UPSERT and (source.template is not None or source.fields):
        problems.append(f"{where}: 'template' and 'fields' belong to upsert, not {verb}")
    if verb is Verb.PUSH and not (source.message or "").strip():
        problems.append(f"{where}: push needs a 'message'")
    if verb is not Verb.PUSH and source.message is not None:
        problems.append(f"{where}: 'message' belongs to push, not {verb}")
    if verb is not Verb.UPSERT and source.account is not None:
        problems.append(
            f"{where}: 'account' belongs to upsert, not {verb} (it follows the pass key)"
        )
    if verb is not Verb.UPSERT and source.recreate_if_missing is not None:
        problems.append(f"{where}: 'recreate_if_missing' belongs to upsert, not {verb}")


def _field(where: str, value: str | float | bool, problems: list[str]) -> Expr:
    if not isinstance(value, str):
        return parse(json.dumps(value))  # a YAML number or boolean is a constant
    return _expression(where, value, problems) or parse("null")


def _expression(where: str, source: str, problems: list[str]) -> Expr | None:
    try:
        expr = parse(source)
    except ExpressionError as exc:
        problems.append(f"{where}: bad expression {source!r}: {exc}")
        return None
    _check_paths(where, source, paths(expr), problems)
    return expr


def _message(where: str, source: str | None, problems: list[str]) -> Message | None:
    if source is None:
        return None
    try:
        message = parse_message(source)
    except ExpressionError as exc:
        problems.append(f"{where} message: bad message {source!r}: {exc}")
        return None
    _check_paths(f"{where} message", source, message.paths(), problems)
    return message


def _check_paths(where: str, source: str, found: Iterable[Any], problems: list[str]) -> None:
    for path in found:
        if not known_path(path.parts):
            hint = f' (a text constant is quoted: "{path}")' if len(path.parts) == 1 else ""
            problems.append(f"{where}: unknown event field {str(path)!r} in {source!r}{hint}")


def _schema_paths(model: type[BaseModel], trail: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Every path of the canonical schema; a dict field is free-form below it (marked '*')."""
    for name, info in model.model_fields.items():
        here = (*trail, name)
        yield here
        kinds = [info.annotation, *get_args(info.annotation)]
        if any(isinstance(k, type) and issubclass(k, BaseModel) for k in kinds):
            nested = next(k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel))
            yield from _schema_paths(nested, here)
        elif any(k is dict or getattr(k, "__origin__", None) is dict for k in kinds):
            yield (*here, "*")


SCHEMA_PATHS = frozenset(_schema_paths(CanonicalEvent, ()))


def known_path(parts: tuple[str, ...]) -> bool:
    """Whether the canonical event has this path (`customer.attributes.*`, `data.*` are free)."""
    if parts in SCHEMA_PATHS:
        return True
    return any((*parts[:cut], "*") in SCHEMA_PATHS for cut in range(1, len(parts)))


def _check_pass_keys(rules: list[Rule], problems: list[str]) -> dict[str, str]:
    """One template per pass key, and every void/unvoid/delete/push key has an upsert."""
    templates: dict[str, str] = {}
    for rule in rules:
        for action in rule.actions:
            if action.verb is not Verb.UPSERT or action.template is None:
                continue
            known = templates.setdefault(action.pass_key, action.template)
            if known != action.template:
                problems.append(
                    f"rule {rule.name!r}: pass {action.pass_key!r} uses template "
                    f"{action.template!r}, another rule uses {known!r}"
                )
    for rule in rules:
        for action in rule.actions:
            if action.pass_key not in templates:
                problems.append(
                    f"rule {rule.name!r}: {action.verb} of unknown pass key {action.pass_key!r} "
                    f"(no rule upserts it)"
                )
    return templates


def missing_templates(
    rules: RuleSet, available: list[ProviderTemplate], *, account: str | None = None
) -> list[str]:
    """One line per rule naming a template the provider does not list (with `account`: only
    the rules whose passes are on that account)."""
    names = {t.name for t in available}
    known = ", ".join(sorted(names)) or "none"
    problems = []
    for rule in rules.rules:
        for action in rule.actions:
            if account is not None and rules.account_of(action.pass_key) != account:
                continue
            if action.template is not None and action.template not in names:
                problems.append(
                    f"rule {rule.name!r}: template {action.template!r} not found at provider "
                    f"(known: {known})"
                )
    return problems


def event_document(event: CanonicalEvent) -> dict[str, Any]:
    """The event as plain JSON data, which expressions read."""
    return event.model_dump(mode="json")


def matching_rules(event: CanonicalEvent, rules: RuleSet) -> list[Rule]:
    doc = event_document(event)
    return [rule for rule in rules.rules if rule.matches(event, doc)]


def plan_event(event: CanonicalEvent, rules: RuleSet) -> list[PassPlan]:
    """The steps this event asks of each pass, passes in key order (a stable lock order)."""
    doc = event_document(event)
    by_key: dict[str, list[Step]] = {}
    for rule in matching_rules(event, rules):
        for action in rule.actions:
            _add_step(by_key.setdefault(action.pass_key, []), _step(action, doc))
    return [PassPlan(key, rules.templates.get(key), tuple(by_key[key])) for key in sorted(by_key)]


def _step(action: Action, doc: dict[str, Any]) -> Step:
    if action.verb is Verb.UPSERT:
        values = {name: evaluate(expr, doc) for name, expr in action.fields}
        # A missing value leaves the field out: the pass keeps what it shows.
        fields = {name: value for name, value in values.items() if value is not None}
        return Step(action.verb, (action.rule,), fields=fields, recreate=action.recreate)
    if action.verb is Verb.PUSH and action.message is not None:
        return Step(action.verb, (action.rule,), message=action.message.render(doc))
    return Step(action.verb, (action.rule,))


def _add_step(steps: list[Step], step: Step) -> None:
    # Back-to-back upserts of one pass (two matching rules) become one call.
    if steps and steps[-1].verb is Verb.UPSERT and step.verb is Verb.UPSERT:
        steps.append(merge_upserts(steps.pop(), step))
    else:
        steps.append(step)


def merge_upserts(first: Step, second: Step) -> Step:
    """One upsert with the effect of `first` then `second` (the provider merges fields)."""
    fields = {**first.fields, **second.fields}
    recreate = first.recreate and second.recreate
    rules = tuple(dict.fromkeys(first.rules + second.rules))
    return Step(Verb.UPSERT, rules, fields, recreate=recreate)


def desired_passes(event: CanonicalEvent, rules: RuleSet) -> list[DesiredPass]:
    """The upserts this event asks for, merged per pass, in pass-key order."""
    out = []
    for plan in plan_event(event, rules):
        fields: dict[str, Any] = {}
        upserts = [step for step in plan.steps if step.verb is Verb.UPSERT]
        for step in upserts:
            fields.update(step.fields)
        if upserts and plan.template_name is not None:
            out.append(DesiredPass(plan.pass_key, plan.template_name, fields))
    return out


def content_hash(template_id: str, fields: dict[str, Any]) -> str:
    body = json.dumps({"t": template_id, "f": fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def user_provided_id(prefix: str, pass_key: str, customer_id: str) -> str:
    """The deterministic external id sent to the provider for (customer, pass key).

    `{prefix}-{pass_key}-{customer_id}` when the customer id is URL-safe, so support staff can
    read it; otherwise `{prefix}-{pass_key}-~{sha256 prefix}`. Pass keys never contain '-'
    and '~' is never in a safe id, so two different pairs never share an id.
    """
    if SAFE_ID.match(customer_id):
        return f"{prefix}-{pass_key}-{customer_id}"
    digest = hashlib.sha256(customer_id.encode()).hexdigest()[:40]
    return f"{prefix}-{pass_key}-~{digest}"
