"""The upsert engine: apply one ledger event to the provider, exactly once in effect.

Exactly once comes from the data, not the broker: the event row and each pass mapping row are
locked for the transaction (FOR UPDATE on Postgres; SQLite transactions begin IMMEDIATE and so
serialize), a handled event is never applied again, an event older than what a pass already
shows is skipped, an unchanged pass costs no call, and a create refused as "already exists"
(our crash between create and commit) adopts the existing pass instead of making a twin.
The caller commits; this module never does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.config import Settings
from worker.db import utcnow
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.inbound.status import MAX_ERROR_CHARS
from worker.providers.errors import AlreadyExistsError, NotFoundError, RejectedError
from worker.providers.port import PassProvider, ProviderPass
from worker.sync.models import PassMapping, PassStatus
from worker.sync.rules import (
    PassPlan,
    RuleSet,
    Step,
    Verb,
    compile_rules,
    content_hash,
    plan_event,
    user_provided_id,
)
from worker.sync.templates import TemplateResolver


class EventNotFoundError(LookupError):
    """The task names a ledger id that does not exist."""


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    ADOPTED = "adopted"  # create said "already exists": found and brought up to date
    RECREATED = "recreated"  # update said 404: the pass was deleted at the provider
    UNCHANGED = "unchanged"  # provider already shows this: no call
    STALE = "stale"  # a newer event was already applied to this pass: no call
    VOIDED = "voided"
    UNVOIDED = "unvoided"
    DELETED = "deleted"
    PUSHED = "pushed"
    ABSENT = "absent"  # void/unvoid/delete of a pass that does not exist: nothing to do
    FAILED = "failed"  # a push that could not be sent; the event is still handled


@dataclass(frozen=True)
class PassResult:
    pass_key: str
    outcome: Outcome
    provider_pass_id: str | None
    action: str = Verb.UPSERT
    reason: str | None = None


@dataclass
class EventResult:
    event_id: int
    already_handled: bool = False
    passes: list[PassResult] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [p.reason for p in self.passes if p.outcome is Outcome.FAILED and p.reason]


@dataclass
class SyncContext:
    """What the engine needs besides the session: built once per process by the edge.

    The rules are compiled from the settings on construction (RulesError if invalid).
    """

    settings: Settings
    provider: PassProvider
    templates: TemplateResolver
    rules: RuleSet = field(init=False)

    def __post_init__(self) -> None:
        self.rules = compile_rules(self.settings.sync)


def process_event(session: Session, event_id: int, ctx: SyncContext) -> EventResult:
    """Apply ledger event `event_id`; marks it handled. Provider errors propagate unchanged,
    except a push that cannot be sent: that action fails, noted in the event's last_error."""
    row = session.execute(
        select(InboundEvent).where(InboundEvent.id == event_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise EventNotFoundError(f"inbound event {event_id} does not exist")
    result = EventResult(event_id=event_id)
    if row.status == EventStatus.HANDLED:
        result.already_handled = True
        return result
    event = CanonicalEvent.model_validate(row.payload)
    plans = plan_event(event, ctx.rules)
    # Every mapping row is locked before any call, always in pass-key order (no deadlocks).
    locked = [(p, _lock_mapping(session, ctx, event.customer.id, p.pass_key)) for p in plans]
    for plan, mapping in locked:
        result.passes.extend(_apply_plan(session, event, plan, mapping, ctx))
    row.status = EventStatus.HANDLED
    row.attempts += 1
    row.last_error = "; ".join(result.failures)[:MAX_ERROR_CHARS] or None
    row.handled_at = utcnow()
    return result


@dataclass(frozen=True)
class _PassWork:
    """One pass of one event: its locked mapping row and everything needed to change it."""

    session: Session
    event: CanonicalEvent
    plan: PassPlan
    mapping: PassMapping
    ctx: SyncContext

    def others_unfinished(self) -> bool:
        return _other_unfinished(self.session, self.event.customer.id, self.event.id)


def _apply_plan(
    session: Session, event: CanonicalEvent, plan: PassPlan, mapping: PassMapping, ctx: SyncContext
) -> list[PassResult]:
    if _is_stale(mapping, event):
        actions = "+".join(step.verb for step in plan.steps)
        return [PassResult(plan.pass_key, Outcome.STALE, mapping.provider_pass_id, actions)]
    work = _PassWork(session, event, plan, mapping, ctx)
    results = [_apply_step(work, step) for step in plan.steps]  # in order, one at a time
    mapping.last_event_at = event.occurred_at
    mapping.last_event_id = event.id
    return results


def _apply_step(work: _PassWork, step: Step) -> PassResult:
    key, mapping = work.plan.pass_key, work.mapping
    pass_id = mapping.provider_pass_id
    if step.verb is Verb.UPSERT:
        return PassResult(key, _upsert_step(work, step), mapping.provider_pass_id)
    if step.verb is Verb.PUSH:
        return _push_step(key, step, mapping, work.ctx)
    if step.verb is Verb.DELETE:
        return PassResult(key, _delete_step(mapping, work.ctx), pass_id, step.verb)
    outcome = _void_step(work, voided=step.verb is Verb.VOID)
    return PassResult(key, outcome, mapping.provider_pass_id or pass_id, step.verb)


def _live(mapping: PassMapping) -> bool:
    """Whether the provider holds this pass (as far as our last commit knows)."""
    return bool(mapping.provider_pass_id) and mapping.status in (
        PassStatus.ACTIVE,
        PassStatus.VOIDED,
    )


def _upsert_step(work: _PassWork, step: Step) -> Outcome:
    mapping, ctx = work.mapping, work.ctx
    name = work.plan.template_name or ""  # compile_rules gives every upserted key a template
    template_id = ctx.templates.resolve(name)
    if (
        _live(mapping)
        and mapping.content_hash == content_hash(template_id, step.fields)
        and not work.others_unfinished()
    ):
        return Outcome.UNCHANGED
    outcome, found, template_id = _upsert(mapping, name, template_id, step.fields, ctx)
    mapping.template_id = template_id
    mapping.content_hash = content_hash(template_id, step.fields)
    _record_pass(mapping, found, outcome)
    return outcome


def _upsert(
    mapping: PassMapping, name: str, template_id: str, fields: dict[str, Any], ctx: SyncContext
) -> tuple[Outcome, ProviderPass, str]:
    if _live(mapping) and mapping.provider_pass_id:
        try:
            updated = ctx.provider.update_pass(mapping.provider_pass_id, fields)
            return Outcome.UPDATED, updated, template_id
        except NotFoundError:
            outcome, created, template_id = _create_or_adopt(
                mapping, name, template_id, fields, ctx
            )
            outcome = Outcome.RECREATED if outcome is Outcome.CREATED else outcome
            return outcome, created, template_id
    return _create_or_adopt(mapping, name, template_id, fields, ctx)


def _create_or_adopt(
    mapping: PassMapping, name: str, template_id: str, fields: dict[str, Any], ctx: SyncContext
) -> tuple[Outcome, ProviderPass, str]:
    provider = ctx.provider
    try:
        created, template_id = _create(mapping, name, template_id, fields, ctx)
        return Outcome.CREATED, created, template_id
    except AlreadyExistsError:
        existing = provider.get_pass(mapping.user_provided_id)
        # The existing pass may carry older fields (created by an earlier attempt of another
        # event), so bring it up to date; this write happens only on the recovery path.
        updated = provider.update_pass(existing.pass_id, fields)
        return Outcome.ADOPTED, _merge_links(updated, existing), template_id


def _create(
    mapping: PassMapping, name: str, template_id: str, fields: dict[str, Any], ctx: SyncContext
) -> tuple[ProviderPass, str]:
    """Create the pass; if the cached template id is gone, list the templates once more."""
    upid = mapping.user_provided_id
    try:
        return ctx.provider.create_pass(
            template_id=template_id, user_provided_id=upid, fields=fields
        ), template_id
    except NotFoundError:
        fresh = ctx.templates.refresh(name)  # UnknownTemplateError when the name is gone
        if fresh == template_id:
            raise
    created = ctx.provider.create_pass(template_id=fresh, user_provided_id=upid, fields=fields)
    return created, fresh


def _merge_links(primary: ProviderPass, fallback: ProviderPass) -> ProviderPass:
    # A write's answer may not say whether the pass is voided; the lookup does.
    return primary.model_copy(
        update={
            "download_page": primary.download_page or fallback.download_page,
            "iphone_uri": primary.iphone_uri or fallback.iphone_uri,
            "android_uri": primary.android_uri or fallback.android_uri,
            "voided": fallback.voided,
        }
    )


def _record_pass(mapping: PassMapping, found: ProviderPass, outcome: Outcome) -> None:
    if outcome is Outcome.ADOPTED:
        mapping.status = PassStatus.VOIDED if found.voided else PassStatus.ACTIVE
    elif outcome is not Outcome.UPDATED:  # an update keeps the pass voided or active
        mapping.status = PassStatus.ACTIVE
    mapping.provider_pass_id = found.pass_id
    mapping.download_page = found.download_page or mapping.download_page
    mapping.iphone_uri = found.iphone_uri or mapping.iphone_uri
    mapping.android_uri = found.android_uri or mapping.android_uri


def _void_step(work: _PassWork, *, voided: bool) -> Outcome:
    mapping, ctx = work.mapping, work.ctx
    if not _live(mapping) or mapping.provider_pass_id is None:
        return Outcome.ABSENT
    target = PassStatus.VOIDED if voided else PassStatus.ACTIVE
    # Another unfinished event may have flipped the pass and lost its transaction, so the
    # provider can differ from our status: then only a call is safe.
    if mapping.status == target and not work.others_unfinished():
        return Outcome.UNCHANGED
    try:
        ctx.provider.set_voided(mapping.provider_pass_id, voided)
    except NotFoundError:
        _forget_pass(mapping)  # deleted at the provider; a later upsert recreates it
        return Outcome.ABSENT
    mapping.status = target
    return Outcome.VOIDED if voided else Outcome.UNVOIDED


def _delete_step(mapping: PassMapping, ctx: SyncContext) -> Outcome:
    if not _live(mapping) or mapping.provider_pass_id is None:
        return Outcome.ABSENT
    # A 404 means already gone: deleted at the provider, or our earlier attempt lost its answer.
    with contextlib.suppress(NotFoundError):
        ctx.provider.delete_pass(mapping.provider_pass_id)
    _forget_pass(mapping)
    return Outcome.DELETED


def _forget_pass(mapping: PassMapping) -> None:
    mapping.status = PassStatus.DELETED
    mapping.provider_pass_id = None
    mapping.content_hash = None
    mapping.download_page = mapping.iphone_uri = mapping.android_uri = None


def _push_step(pass_key: str, step: Step, mapping: PassMapping, ctx: SyncContext) -> PassResult:
    pass_id = mapping.provider_pass_id
    if not _live(mapping) or pass_id is None:
        reason = f"push to pass {pass_key!r}: the customer has no such pass"
        return PassResult(pass_key, Outcome.FAILED, None, step.verb, reason)
    try:
        ctx.provider.send_push(pass_id, step.message or "")
    except NotFoundError:
        reason = f"push to pass {pass_key!r}: pass {pass_id} not found at provider"
        return PassResult(pass_key, Outcome.FAILED, pass_id, step.verb, reason)
    except RejectedError as exc:
        reason = f"push to pass {pass_key!r}: refused by provider: {exc.message}"
        return PassResult(pass_key, Outcome.FAILED, pass_id, step.verb, reason)
    return PassResult(pass_key, Outcome.PUSHED, pass_id, step.verb)


def _other_unfinished(session: Session, customer_id: str, event_id: str) -> bool:
    """Whether another event of this customer is unfinished (pending, retrying or failed).

    Such an event may have reached the provider and then lost its transaction (a lost answer,
    a SIGKILL), so the provider can be ahead of `content_hash`: then only a write is safe.
    """
    query = (
        select(InboundEvent.id)
        .where(
            InboundEvent.customer_id == customer_id,
            InboundEvent.event_id != event_id,
            InboundEvent.status != EventStatus.HANDLED,
        )
        .limit(1)
    )
    return session.execute(query).first() is not None


def _is_stale(mapping: PassMapping, event: CanonicalEvent) -> bool:
    """True when this pass already reflects an event at or after this one."""
    if mapping.last_event_at is None or mapping.last_event_id is None:
        return False
    return _order_key(event.occurred_at, event.id) <= _order_key(
        mapping.last_event_at, mapping.last_event_id
    )


def _order_key(at: datetime, event_id: str) -> tuple[datetime, str]:
    # Ties on occurred_at are broken by event id, the same way on every worker.
    return (at, event_id)


def _lock_mapping(
    session: Session, ctx: SyncContext, customer_id: str, pass_key: str
) -> PassMapping:
    """Claim the mapping row (insert if absent) and lock it until the caller commits."""
    provider = ctx.provider.name
    values = {
        "provider": provider,
        "customer_id": customer_id,
        "pass_key": pass_key,
        "user_provided_id": user_provided_id(
            ctx.settings.providers.passcreator.user_provided_id_prefix, pass_key, customer_id
        ),
        "status": PassStatus.NEW,
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(PassMapping)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "customer_id", "pass_key"])
    )
    return session.execute(
        select(PassMapping)
        .where(
            PassMapping.provider == provider,
            PassMapping.customer_id == customer_id,
            PassMapping.pass_key == pass_key,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
