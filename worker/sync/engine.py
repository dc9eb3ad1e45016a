"""The upsert engine: apply one ledger event to the provider, exactly once in effect.

An event is applied in three steps, so no database transaction (and on SQLite, no database
write lock) is open while the provider is called:

1. **Claim** (short transaction, committed here): lock the event row and the pass mapping
   rows in pass-key order, skip what is stale, and claim each pass that needs calls: a token
   with an expiry (one attempt at a time per pass, across all workers) and an "unconfirmed"
   mark, committed before any call. While a pass is unconfirmed, the provider may be ahead of
   what we recorded (a lost answer, a crash), so nothing is skipped as unchanged. The claim
   is a lease (worker/sync/lease.py): renewed while this attempt runs, it lapses within
   `sync.claim_seconds` of a crash.
2. **Call** the provider, with no transaction open, each call only while the lease holds.
3. **Record** (in the caller's transaction, which the caller commits): the results, the
   claims released, the event handled. If a call fails, the passes already done are recorded
   and every claim is released (committed here) before the error propagates.

A commit group's events go through the same steps together, set-based, in
worker/sync/group.py (the task path); this module applies one event (campaigns, and the
building blocks the group reuses).

Ordering: an event older (by occurred_at, then event id) than what a pass reflects changes
nothing on it. Coalescing (sync.coalesce_window_ms > 0): newer unfinished events of the same
customer whose plans are upserts only ride along in the same calls (their fields merged in
order, as the provider would merge them) and are marked handled, coalesced into this one.
"""

from __future__ import annotations

import contextlib
import copy
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import reduce
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.config import Settings
from worker.db import utcnow
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.inbound.status import MAX_ERROR_CHARS, UNFINISHED
from worker.providers import registry
from worker.providers.errors import AlreadyExistsError, NotFoundError, RejectedError
from worker.providers.port import PassProvider, ProviderPass
from worker.sync.lease import Lease, LeaseKeeper
from worker.sync.models import PassMapping, PassStatus
from worker.sync.outbound import emit_pass_changes
from worker.sync.rules import (
    PassPlan,
    RuleSet,
    Step,
    Verb,
    compile_rules,
    content_hash,
    merge_upserts,
    plan_event,
    user_provided_id,
)
from worker.sync.templates import TemplateResolver

# At most this many newer events ride along in one call (bounds one transaction's work).
MAX_COALESCED = 100


class EventNotFoundError(LookupError):
    """The task names a ledger id that does not exist."""


class PassBusyError(Exception):
    """Another attempt holds a pass of this event: try again after `retry_after` seconds.

    Not a failure: the event's attempts are not used up.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClaimLostError(PassBusyError):
    """Our claim expired and another attempt took the pass: our result is not recorded."""


class PassDeletedError(RejectedError):
    """An update found the pass deleted at the provider and the rule does not recreate it."""


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
    coalesced: list[int] = field(default_factory=list)  # ledger ids carried by this event

    @property
    def failures(self) -> list[str]:
        return [p.reason for p in self.passes if p.outcome is Outcome.FAILED and p.reason]


# Another account's client and template cache, built by the edge (worker.tasks.runtime).
Connect = Callable[[str], tuple[PassProvider, TemplateResolver]]


@dataclass
class SyncContext:
    """What the engine needs besides the session: built once per process by the edge.

    `provider` and `templates` are those of `account` (default: sync.default_account); a
    pass on another account is handled with `on(account)`, whose client and template cache
    `connect` builds once per account. The rules are compiled from the settings on
    construction, checked against the accounts' capabilities (RulesError if invalid).
    """

    settings: Settings
    provider: PassProvider
    templates: TemplateResolver
    connect: Connect | None = None
    account: str = ""
    rules: RuleSet = field(init=False)
    leases: LeaseKeeper = field(init=False)
    _views: dict[str, SyncContext] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        settings = self.settings
        first = next(iter(settings.providers), "")
        self.account = self.account or settings.sync.default_account or first
        capabilities = registry.capabilities(settings)
        self.rules = compile_rules(settings.sync, capabilities, default_account=self.account)
        self.leases = LeaseKeeper(settings.sync.claim_seconds)

    def on(self, account: str) -> SyncContext:
        """This context for `account`: its own client and template cache (the rules and the
        lease keeper are shared)."""
        if not account or account == self.account:
            return self
        view = self._views.get(account)
        if view is None:
            if self.connect is None:
                raise LookupError(f"no client for account {account!r} in this process")
            view = copy.copy(self)  # shares the rules, the leases and this cache of views
            view.provider, view.templates = self.connect(account)
            view.account = account
            self._views[account] = view
        return view


@dataclass
class PassState:
    """A detached copy of one mapping row: the calls read and change it, no session needed."""

    user_provided_id: str
    status: str
    provider_pass_id: str | None
    template_id: str | None
    content_hash: str | None
    download_page: str | None
    iphone_uri: str | None
    android_uri: str | None
    unconfirmed: bool  # an earlier attempt's calls may have landed unrecorded

    @classmethod
    def of(cls, row: PassMapping) -> PassState:
        return cls(
            row.user_provided_id,
            row.status,
            row.provider_pass_id,
            row.template_id,
            row.content_hash,
            row.download_page,
            row.iphone_uri,
            row.android_uri,
            unconfirmed=row.unconfirmed_since is not None,
        )

    def live(self) -> bool:
        """Whether the provider holds this pass (as far as our last record knows)."""
        return bool(self.provider_pass_id) and self.status in (
            PassStatus.ACTIVE,
            PassStatus.VOIDED,
        )

    def write_to(self, row: PassMapping) -> None:
        row.status = self.status
        row.provider_pass_id = self.provider_pass_id
        row.template_id = self.template_id
        row.content_hash = self.content_hash
        row.download_page = self.download_page
        row.iphone_uri = self.iphone_uri
        row.android_uri = self.android_uri

    def forget(self) -> None:
        self.status = PassStatus.DELETED
        self.provider_pass_id = self.content_hash = None
        self.download_page = self.iphone_uri = self.android_uri = None


@dataclass
class _Member:
    """One ledger event of the group applied together (the leader first, then newer ones)."""

    row_id: int
    event: CanonicalEvent
    plans: dict[str, PassPlan]


@dataclass
class _Job:
    """The claimed work on one pass: its steps, its state, the newest event it reflects."""

    pass_key: str
    mapping_id: int
    template_name: str | None
    steps: tuple[Step, ...]
    state: PassState
    last_at: datetime
    last_id: str
    token: str
    members: list[int]
    results: list[PassResult] = field(default_factory=list)
    account: str = ""  # whose platform holds the pass (the rules' account of the key)


@dataclass
class _Claim:
    leader: int
    jobs: list[_Job]
    result: EventResult
    lease: Lease


def process_event(session: Session, event_id: int, ctx: SyncContext) -> EventResult:
    """Apply ledger event `event_id`; marks it handled (the caller commits that).

    Commits the claim before calling the provider. Raises PassBusyError while another attempt
    holds one of its passes. Provider errors propagate unchanged (claims released, passes
    already done recorded), except a push that cannot be sent: that action fails, noted in
    the event's last_error.
    """
    claim = _claim(session, event_id, ctx)
    if isinstance(claim, EventResult):
        return claim
    done: list[_Job] = []
    try:
        with ctx.leases.renewing(claim.lease):
            for job in claim.jobs:
                _run(job, ctx, claim.lease)
                done.append(job)
    except BaseException:
        _release(session, claim.jobs, done, leader=claim.leader)
        raise
    try:
        _record(session, claim)
    except ClaimLostError:
        _release(session, claim.jobs, claim.jobs, leader=claim.leader)  # record what we hold
        raise
    return claim.result


# --- 1. claim ------------------------------------------------------------------------------


def _claim(session: Session, event_id: int, ctx: SyncContext) -> _Claim | EventResult:
    """Lock, plan, skip the stale, claim the rest and commit; an EventResult when done."""
    row = session.execute(
        select(InboundEvent).where(InboundEvent.id == event_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise EventNotFoundError(f"inbound event {event_id} does not exist")
    result = EventResult(event_id=event_id)
    if row.status in (EventStatus.HANDLED, EventStatus.DEAD):
        result.already_handled = True
        return result
    members = _group(session, row, ctx)
    keys = sorted({key for member in members for key in member.plans})
    # Every mapping row is locked before any call, always in pass-key order (no deadlocks).
    jobs = [job for key in keys if (job := _job(session, ctx, members, key, result))]
    if not jobs:
        _mark_handled(session, row.id, result, [])
        return result
    since = time.monotonic()  # before the claim's expiry is computed: the safe side
    _take_claims(session, jobs, ctx)
    session.commit()
    claims = [(job.mapping_id, job.token) for job in jobs]
    lease = ctx.leases.start_lease(session.get_bind(), claims, since)  # type: ignore[arg-type]
    return _Claim(row.id, jobs, result, lease)


def _group(session: Session, row: InboundEvent, ctx: SyncContext) -> list[_Member]:
    """The event, and with coalescing on, the newer unfinished upsert-only events behind it."""
    leader = _member(row, ctx)
    if ctx.settings.sync.coalesce_window_ms <= 0 or not _upsert_only(leader):
        return [leader]
    members = [leader]
    for other in session.scalars(_newer_unfinished(row)):
        member = _member(other, ctx)
        if not _upsert_only(member):
            break  # a side effect (void, delete, push) keeps its place in the order
        members.append(member)
    return members


def _member(row: InboundEvent, ctx: SyncContext) -> _Member:
    event = CanonicalEvent.model_validate(row.payload)
    return _Member(row.id, event, {p.pass_key: p for p in plan_event(event, ctx.rules)})


def _upsert_only(member: _Member) -> bool:
    return all(plan.upsert_only for plan in member.plans.values())


def _newer_unfinished(row: InboundEvent) -> Any:
    later = or_(
        InboundEvent.occurred_at > row.occurred_at,
        and_(InboundEvent.occurred_at == row.occurred_at, InboundEvent.event_id > row.event_id),
    )
    return (
        select(InboundEvent)
        .where(
            InboundEvent.customer_id == row.customer_id,
            InboundEvent.id != row.id,
            InboundEvent.status.in_(UNFINISHED),
            later,
        )
        .order_by(InboundEvent.occurred_at, InboundEvent.event_id)
        .limit(MAX_COALESCED)
    )


def _job(
    session: Session, ctx: SyncContext, members: list[_Member], key: str, result: EventResult
) -> _Job | None:
    """The work on pass `key`, or None (and a STALE result) when every event is stale."""
    account = ctx.rules.account_of(key) or ctx.account
    mapping = _lock_mapping(session, ctx, account, members[0].event.customer.id, key)
    return _plan_job(mapping, members, key, result, account)


def _plan_job(
    mapping: PassMapping, members: list[_Member], key: str, result: EventResult, account: str
) -> _Job | None:
    """The work on pass `key` given its locked mapping row (see `_job`)."""
    fresh = [m for m in members if key in m.plans and not _is_stale(mapping, m.event)]
    if not fresh:
        if key in members[0].plans:
            actions = "+".join(step.verb for step in members[0].plans[key].steps)
            result.passes.append(PassResult(key, Outcome.STALE, mapping.provider_pass_id, actions))
        return None
    plans = [m.plans[key] for m in fresh]
    steps = plans[0].steps if len(plans) == 1 else (reduce(merge_upserts, _upserts(plans)),)
    newest = fresh[-1].event
    return _Job(
        key,
        mapping.id,
        plans[0].template_name,
        steps,
        PassState.of(mapping),
        newest.occurred_at,
        newest.id,
        token=str(uuid.uuid4()),
        members=[m.row_id for m in fresh],
        account=account,
    )


def _upserts(plans: list[PassPlan]) -> list[Step]:
    return [step for plan in plans for step in plan.steps]


def _take_claims(session: Session, jobs: list[_Job], ctx: SyncContext) -> None:
    now = utcnow()
    rows = [_row(session, job) for job in jobs]  # locked by _job, in this transaction
    for job, row in zip(jobs, rows, strict=True):
        if row.claim_token is not None and row.claim_expires_at and row.claim_expires_at > now:
            wait = (row.claim_expires_at - now).total_seconds()
            session.rollback()
            raise PassBusyError(f"pass {job.pass_key!r} is being synced", retry_after=wait)
    expires = now + timedelta(seconds=ctx.settings.sync.claim_seconds)
    for job, row in zip(jobs, rows, strict=True):
        row.claim_token, row.claim_expires_at, row.unconfirmed_since = job.token, expires, now


# --- 2. call -------------------------------------------------------------------------------


def _run(job: _Job, ctx: SyncContext, lease: Lease) -> None:
    ctx = ctx.on(job.account)  # the account's own client and template cache
    for step in job.steps:  # in order, one at a time
        if not lease.valid():  # another attempt may hold the pass by now: call nothing
            raise ClaimLostError(
                f"the claim on pass {job.pass_key!r} could not be renewed", retry_after=0.0
            )
        job.results.append(_apply_step(job, step, ctx))


def _apply_step(job: _Job, step: Step, ctx: SyncContext) -> PassResult:
    key, state = job.pass_key, job.state
    pass_id = state.provider_pass_id
    if step.verb is Verb.UPSERT:
        return PassResult(key, _upsert_step(job, step, ctx), state.provider_pass_id)
    if step.verb is Verb.PUSH:
        return _push_step(key, step, state, ctx)
    if step.verb is Verb.DELETE:
        return PassResult(key, _delete_step(state, ctx), pass_id, step.verb)
    outcome = _void_step(state, ctx, voided=step.verb is Verb.VOID)
    return PassResult(key, outcome, state.provider_pass_id or pass_id, step.verb)


def _upsert_step(job: _Job, step: Step, ctx: SyncContext) -> Outcome:
    state = job.state
    name = job.template_name or ""  # compile_rules gives every upserted key a template
    template_id = ctx.templates.resolve(name)
    same = state.content_hash == content_hash(template_id, step.fields)
    if state.live() and same and not state.unconfirmed:
        return Outcome.UNCHANGED
    outcome, found, template_id = _upsert(job, step, name, template_id, ctx)
    state.template_id = template_id
    state.content_hash = content_hash(template_id, step.fields)
    _record_pass(state, found, outcome)
    return outcome


def _upsert(
    job: _Job, step: Step, name: str, template_id: str, ctx: SyncContext
) -> tuple[Outcome, ProviderPass, str]:
    state, fields = job.state, step.fields
    if not (state.live() and state.provider_pass_id):
        return _create_or_adopt(state, name, template_id, fields, ctx)
    try:
        updated = ctx.provider.update_pass(state.provider_pass_id, fields)
        return Outcome.UPDATED, updated, template_id
    except NotFoundError:
        if not step.recreate:
            raise PassDeletedError(
                f"pass {state.provider_pass_id} ({job.pass_key!r}) was deleted at the provider "
                f"and rule {', '.join(step.rules)} does not recreate it",
                status=404,
            ) from None
    outcome, created, template_id = _create_or_adopt(state, name, template_id, fields, ctx)
    return (Outcome.RECREATED if outcome is Outcome.CREATED else outcome), created, template_id


def _create_or_adopt(
    state: PassState, name: str, template_id: str, fields: dict[str, Any], ctx: SyncContext
) -> tuple[Outcome, ProviderPass, str]:
    provider = ctx.provider
    try:
        created, template_id = _create(state, name, template_id, fields, ctx)
        return Outcome.CREATED, created, template_id
    except AlreadyExistsError:
        # The template names where the external id lives: one lookup, not one per program.
        existing = provider.get_pass(state.user_provided_id, template_id=template_id)
        # The existing pass may carry older fields (created by an earlier attempt of another
        # event), so bring it up to date; this write happens only on the recovery path.
        updated = provider.update_pass(existing.pass_id, fields)
        return Outcome.ADOPTED, _merge_links(updated, existing), template_id


def _create(
    state: PassState, name: str, template_id: str, fields: dict[str, Any], ctx: SyncContext
) -> tuple[ProviderPass, str]:
    """Create the pass; if the cached template id is gone, list the templates once more."""
    upid = state.user_provided_id
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


def _record_pass(state: PassState, found: ProviderPass, outcome: Outcome) -> None:
    if outcome is Outcome.ADOPTED:
        state.status = PassStatus.VOIDED if found.voided else PassStatus.ACTIVE
    elif outcome is not Outcome.UPDATED:  # an update keeps the pass voided or active
        state.status = PassStatus.ACTIVE
    state.provider_pass_id = found.pass_id
    state.download_page = found.download_page or state.download_page
    state.iphone_uri = found.iphone_uri or state.iphone_uri
    state.android_uri = found.android_uri or state.android_uri


def _void_step(state: PassState, ctx: SyncContext, *, voided: bool) -> Outcome:
    if not state.live() or state.provider_pass_id is None:
        return Outcome.ABSENT
    target = PassStatus.VOIDED if voided else PassStatus.ACTIVE
    # An unconfirmed pass may have been flipped by a call whose answer was lost.
    if state.status == target and not state.unconfirmed:
        return Outcome.UNCHANGED
    try:
        ctx.provider.set_voided(state.provider_pass_id, voided)
    except NotFoundError:
        state.forget()  # deleted at the provider; a later upsert recreates it
        return Outcome.ABSENT
    state.status = target
    return Outcome.VOIDED if voided else Outcome.UNVOIDED


def _delete_step(state: PassState, ctx: SyncContext) -> Outcome:
    if not state.live() or state.provider_pass_id is None:
        return Outcome.ABSENT
    # A 404 means already gone: deleted at the provider, or our earlier attempt lost its answer.
    with contextlib.suppress(NotFoundError):
        ctx.provider.delete_pass(state.provider_pass_id)
    state.forget()
    return Outcome.DELETED


def _push_step(pass_key: str, step: Step, state: PassState, ctx: SyncContext) -> PassResult:
    pass_id = state.provider_pass_id
    if not state.live() or pass_id is None:
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


# --- 3. record -----------------------------------------------------------------------------


def _record(session: Session, claim: _Claim) -> None:
    """Write every job's result, release the claims, mark the events handled."""
    riders = sorted({m for job in claim.jobs for m in job.members} - {claim.leader})
    # Event rows before mapping rows, as in the claim step: one lock order, no deadlocks.
    session.execute(
        select(InboundEvent.id)
        .where(InboundEvent.id.in_([claim.leader, *riders]))
        .order_by(InboundEvent.id)
        .with_for_update()
    ).all()
    for job in claim.jobs:
        row = _locked(session, job)
        if row.claim_token != job.token:
            raise ClaimLostError(
                f"the claim on pass {job.pass_key!r} expired and was taken over",
                retry_after=0.0,
            )
        announced = row.provider_pass_id  # outbox: the pass id recorded before this job
        _write_job(row, job)
        _emit(session, claim.leader, row, job, announced)  # outbox
        claim.result.passes.extend(job.results)
    _mark_handled(session, claim.leader, claim.result, riders)


def _release(session: Session, jobs: list[_Job], done: list[_Job], *, leader: int) -> None:
    """After a failure: record the passes done, free every claim still ours, commit."""
    session.rollback()
    for job in jobs:
        row = _locked(session, job)
        if row.claim_token != job.token:
            continue
        if job in done:
            announced = row.provider_pass_id  # outbox
            _write_job(row, job)
            _emit(session, leader, row, job, announced)  # outbox
        row.claim_token = row.claim_expires_at = None  # the rest stays unconfirmed
    session.commit()


def _emit(
    session: Session, leader: int, row: PassMapping, job: _Job, announced: str | None
) -> None:
    """Outbox: the CRM's view of this job's recorded changes, in the recording transaction."""
    steps = [(str(r.action), str(r.outcome), r.provider_pass_id) for r in job.results]
    emit_pass_changes(
        session,
        leader=leader,
        row=row,
        template=job.template_name,
        before_pass_id=announced,
        steps=steps,
    )


def _write_job(row: PassMapping, job: _Job) -> None:
    job.state.write_to(row)
    row.last_event_at, row.last_event_id = job.last_at, job.last_id
    row.claim_token = row.claim_expires_at = row.unconfirmed_since = None


def _mark_handled(session: Session, leader: int, result: EventResult, riders: list[int]) -> None:
    row = session.execute(
        select(InboundEvent)
        .where(InboundEvent.id == leader)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    now = utcnow()
    row.status = EventStatus.HANDLED
    row.attempts += 1
    row.last_error = "; ".join(result.failures)[:MAX_ERROR_CHARS] or None
    row.handled_at = now
    if riders:
        carried = session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_(riders), InboundEvent.status.in_(UNFINISHED))
            .values(status=EventStatus.HANDLED.value, handled_at=now, coalesced_into=leader)
            .returning(InboundEvent.id)
        )
        result.coalesced = sorted(carried.scalars())


# --- ordering and locks --------------------------------------------------------------------


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


def _row(session: Session, job: _Job) -> PassMapping:
    row = session.get(PassMapping, job.mapping_id)
    assert row is not None  # loaded and locked by _job in this transaction
    return row


def _locked(session: Session, job: _Job) -> PassMapping:
    """The job's mapping row, locked and read afresh."""
    return session.execute(
        select(PassMapping)
        .where(PassMapping.id == job.mapping_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _lock_mapping(
    session: Session, ctx: SyncContext, account: str, customer_id: str, pass_key: str
) -> PassMapping:
    """Claim the mapping row (insert if absent) and lock it until the transaction ends.

    The `provider` column holds the account's name (before named accounts: the platform's,
    which is the name of an upgraded install's only account)."""
    provider = account
    insert_mappings(session, [mapping_values(ctx, account, customer_id, pass_key)])
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


def mapping_values(
    ctx: SyncContext, account: str, customer_id: str, pass_key: str
) -> dict[str, Any]:
    """The columns of a new mapping row (status new: nothing created at the provider yet)."""
    now = utcnow()
    return {
        "provider": account,
        "kind": ctx.on(account).provider.name,
        "customer_id": customer_id,
        "pass_key": pass_key,
        "user_provided_id": user_provided_id(
            ctx.settings.sync.external_id_prefix, pass_key, customer_id
        ),
        "status": PassStatus.NEW,
        "created_at": now,
        "updated_at": now,
    }


def insert_mappings(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert the mapping rows that do not exist yet, in one statement."""
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(PassMapping).on_conflict_do_nothing(
        index_elements=["provider", "customer_id", "pass_key"]
    )
    session.execute(statement, rows)  # one multi-row statement (insertmanyvalues), cached
