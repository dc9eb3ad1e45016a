"""The upsert engine for a group of ledger events: claim, call and record them together.

The same three steps as `worker.sync.engine.process_event`, the same claims, leases, ordering
and coalescing, but set-based: one claim transaction and one record transaction for the whole
group, each a handful of statements (the events locked in one SELECT, the mapping rows
inserted in one INSERT and locked in one SELECT, the claims taken in one UPDATE, the events
marked handled in one UPDATE), and the provider calls of the group's events made
concurrently (`concurrency` threads), with no transaction open. Like `process_event`, this
owns its short transactions: it commits the claim, and the record (the caller's session).

What cannot be applied with the group is handed back, untouched or released, for the
event's own task (which applies the full retry and dead-letter policy): an event its pacer
says must wait, an event whose pass another attempt holds, a second event of a customer
already in the group (without coalescing), an event whose calls failed (the passes it had
done are recorded and every claim is released first), or an id missing from the ledger.
Exactly once holds as for a single event: claims are taken (and marked unconfirmed) and
committed before any call, each call checks the lease, and the record step checks every
claim token again (a fence) before it writes a result.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from worker.db import utcnow
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.status import MAX_ERROR_CHARS, UNFINISHED
from worker.sync.engine import (
    MAX_COALESCED,
    ClaimLostError,
    EventNotFoundError,
    EventResult,
    PassBusyError,
    SyncContext,
    _emit,
    _Job,
    _Member,
    _member,
    _order_key,
    _plan_job,
    _run,
    _upsert_only,
    _write_job,
    insert_mappings,
    mapping_values,
)
from worker.sync.lease import Lease
from worker.sync.models import PassMapping


class HandOn:
    """Why an event goes on as its own task (the edge picks the countdown)."""

    MISSING = "missing"  # not in the ledger: its own task says so and drops it
    PACED = "paced"  # its customer was applied less than a window ago
    BUSY = "busy"  # another attempt holds one of its passes
    LATER = "later"  # a second event of a customer already in this group
    FAILED = "failed"  # its calls (or its record) failed: the passes done are recorded


@dataclass(frozen=True)
class HandedOn:
    event_id: int
    reason: str
    wait: float = 0.0  # seconds (paced: until the window's end; busy: the claim's expiry)
    error: BaseException | None = None  # busy: PassBusyError; failed: what the calls raised


@dataclass
class GroupResult:
    applied: dict[int, EventResult] = field(default_factory=dict)  # applied or already handled
    handed_on: list[HandedOn] = field(default_factory=list)

    def only(self, event_id: int) -> EventResult | float:
        """A group of one, as `process_event` answers: its result, or the seconds its pacer
        says to wait; raises EventNotFoundError, PassBusyError or what its calls raised."""
        if event_id in self.applied:
            return self.applied[event_id]
        [handed] = [h for h in self.handed_on if h.event_id == event_id]
        if handed.reason == HandOn.PACED:
            return handed.wait
        if handed.reason == HandOn.MISSING:
            raise EventNotFoundError(f"inbound event {event_id} does not exist")
        assert handed.error is not None  # busy and failed carry their error
        raise handed.error


# The provider calls of one event run inside this (the edge attributes them: audit actor).
Scope = Callable[[int], AbstractContextManager[object]]
# Seconds each customer's event must wait before it runs (0: now), in the order given.
Pace = Callable[[list[str]], list[float]]


@dataclass
class _Entry:
    """One event applied by the group (its leader), with the newer ones riding along."""

    row: InboundEvent
    members: list[_Member]
    result: EventResult
    jobs: list[_Job] = field(default_factory=list)
    done: list[_Job] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def riders(self) -> list[int]:
        return sorted({m for job in self.jobs for m in job.members} - {self.row.id})


def process_group(
    session: Session,
    ids: list[int],
    ctx: SyncContext,
    *,
    pace: Pace | None = None,
    scope: Scope | None = None,
    concurrency: int = 1,
) -> GroupResult:
    """Apply the ledger events `ids` together; marks them handled (the caller commits).

    Commits the claim before any provider call. Returns what was applied (or found already
    handled) and what goes on as its own task, and why. Raises only on a database error, in
    which case no event of the group was recorded (claims taken lapse with their lease).
    """
    out = GroupResult()
    entries = _claim(session, ids, ctx, out, pace)
    if not entries:
        return out
    claims = [(job.mapping_id, job.token) for e in entries for job in e.jobs]
    lease = ctx.leases.start_lease(session.get_bind(), claims, entries[0].since)  # type: ignore[arg-type]
    with ctx.leases.renewing(lease):
        _call_all(entries, ctx, lease, scope, concurrency)
    _record(session, entries, out)
    carried = {i for result in out.applied.values() for i in result.coalesced}
    # A newer event of a customer in the group that rode along needs no task of its own.
    out.handed_on = [
        h
        for h in out.handed_on
        if not (h.reason in (HandOn.LATER, HandOn.PACED) and h.event_id in carried)
    ]
    errors = [e.error for e in entries if e.error and not isinstance(e.error, Exception)]
    if errors:
        raise errors[0]  # KeyboardInterrupt, SystemExit: after the record, as process_event
    return out


# --- 1. claim ------------------------------------------------------------------------------


@dataclass
class _Claimed(_Entry):
    since: float = 0.0


def _claim(
    session: Session, ids: list[int], ctx: SyncContext, out: GroupResult, pace: Pace | None
) -> list[_Claimed]:
    """Lock the events, pace them, plan, lock the mappings, claim; commit. The entries that
    have calls to make (the rest is applied, or handed on, already)."""
    rows = session.scalars(
        select(InboundEvent)
        .where(InboundEvent.id.in_(sorted(set(ids))))
        .order_by(InboundEvent.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    found = {row.id for row in rows}
    out.handed_on += [HandedOn(i, HandOn.MISSING) for i in sorted(set(ids) - found)]
    pending = []
    for row in rows:
        if row.status in (EventStatus.HANDLED, EventStatus.DEAD):
            out.applied[row.id] = EventResult(event_id=row.id, already_handled=True)
        else:
            pending.append(row)
    leaders = _leaders(pending, out, pace)
    if not leaders:
        session.commit()
        return []
    entries = [
        _Claimed(row, members, EventResult(event_id=row.id))
        for row, members in _groups(session, leaders, ctx)
    ]
    mappings = _lock_mappings(session, ctx, entries)
    now = utcnow()
    by_id = {row.id: row for row in mappings.values()}
    claimed: list[_Claimed] = []
    finished: list[_Claimed] = []
    for entry in entries:
        for key in sorted({key for member in entry.members for key in member.plans}):
            account = ctx.rules.account_of(key) or ctx.account
            mapping = mappings[(account, entry.row.customer_id, key)]
            job = _plan_job(mapping, entry.members, key, entry.result, account)
            if job is not None:
                entry.jobs.append(job)
        waits = [(_claimed_for(by_id[job.mapping_id], now), job.pass_key) for job in entry.jobs]
        wait, key = max(waits, default=(0.0, ""))
        if wait > 0:
            busy = PassBusyError(f"pass {key!r} is being synced", retry_after=wait)
            out.handed_on.append(HandedOn(entry.row.id, HandOn.BUSY, wait, busy))
        elif entry.jobs:
            claimed.append(entry)
        else:
            finished.append(entry)
    _mark_handled(session, finished, now)
    since = time.monotonic()  # before the claims' expiry is computed: the safe side
    token = str(uuid.uuid4())
    for entry in claimed:
        entry.since = since
        for job in entry.jobs:
            job.token = token
    mapping_ids = [job.mapping_id for entry in claimed for job in entry.jobs]
    if mapping_ids:
        session.execute(
            update(PassMapping)
            .where(PassMapping.id.in_(mapping_ids))
            .values(
                claim_token=token,
                claim_expires_at=now + timedelta(seconds=ctx.settings.sync.claim_seconds),
                unconfirmed_since=now,
            )
            .execution_options(synchronize_session=False)
        )
    session.commit()
    for entry in finished:
        out.applied[entry.row.id] = entry.result
    return claimed


def _claimed_for(row: PassMapping, now: datetime) -> float:
    """Seconds until another attempt's claim on `row` expires (0: free)."""
    if row.claim_token is None or row.claim_expires_at is None or row.claim_expires_at <= now:
        return 0.0
    return (row.claim_expires_at - now).total_seconds()


def _leaders(
    pending: list[InboundEvent], out: GroupResult, pace: Pace | None
) -> list[InboundEvent]:
    """The events to apply now: those the pacer lets run, one per customer, its oldest in
    the group (the newer ones can then ride along with it)."""
    pending = sorted(pending, key=lambda row: _order_key(row.occurred_at, row.event_id))
    waits = pace([row.customer_id for row in pending]) if pace and pending else []
    leaders: list[InboundEvent] = []
    customers: set[str] = set()
    for index, row in enumerate(pending):
        wait = waits[index] if waits else 0.0
        if wait > 0:
            out.handed_on.append(HandedOn(row.id, HandOn.PACED, wait))
        elif row.customer_id in customers:
            out.handed_on.append(HandedOn(row.id, HandOn.LATER))
        else:
            customers.add(row.customer_id)
            leaders.append(row)
    return leaders


def _groups(
    session: Session, leaders: list[InboundEvent], ctx: SyncContext
) -> list[tuple[InboundEvent, list[_Member]]]:
    """Each leader with, when coalescing is on, the newer unfinished upsert-only events of
    its customer behind it (read in one query for the whole group)."""
    firsts = [(row, _member(row, ctx)) for row in leaders]
    coalescing = ctx.settings.sync.coalesce_window_ms > 0
    wanted = [row for row, first in firsts if coalescing and _upsert_only(first)]
    behind: dict[str, list[InboundEvent]] = {}
    if wanted:
        others = session.scalars(
            select(InboundEvent)
            .where(
                InboundEvent.customer_id.in_(sorted({row.customer_id for row in wanted})),
                InboundEvent.status.in_(UNFINISHED),
                InboundEvent.id.not_in([row.id for row in wanted]),
            )
            .order_by(InboundEvent.customer_id, InboundEvent.occurred_at, InboundEvent.event_id)
        )
        for other in others:
            behind.setdefault(other.customer_id, []).append(other)
    groups = []
    for row, first in firsts:
        members = [first]
        if coalescing and _upsert_only(first):
            members += _riders(row, behind.get(row.customer_id, []), ctx)
        groups.append((row, members))
    return groups


def _riders(row: InboundEvent, others: Iterable[InboundEvent], ctx: SyncContext) -> list[_Member]:
    """The newer events behind `row` that ride along, up to the first side effect."""
    mine = _order_key(row.occurred_at, row.event_id)
    riders: list[_Member] = []
    for other in others:
        if _order_key(other.occurred_at, other.event_id) <= mine:
            continue
        member = _member(other, ctx)
        if not _upsert_only(member) or len(riders) >= MAX_COALESCED:
            break  # a side effect (void, delete, push) keeps its place in the order
        riders.append(member)
    return riders


def _lock_mappings(
    session: Session, ctx: SyncContext, entries: list[_Claimed]
) -> dict[tuple[str, str, str], PassMapping]:
    """Insert the missing mapping rows and lock all of them, in (customer, pass key) order,
    the order `process_event` locks one customer's passes in (no deadlocks)."""
    wanted = sorted(
        {
            (entry.row.customer_id, key, ctx.rules.account_of(key) or ctx.account)
            for entry in entries
            for member in entry.members
            for key in member.plans
        }
    )
    insert_mappings(
        session, [mapping_values(ctx, account, customer, key) for customer, key, account in wanted]
    )
    if not wanted:
        return {}
    rows = session.scalars(
        select(PassMapping)
        .where(
            tuple_(PassMapping.provider, PassMapping.customer_id, PassMapping.pass_key).in_(
                [(account, customer, key) for customer, key, account in wanted]
            )
        )
        .order_by(PassMapping.customer_id, PassMapping.pass_key, PassMapping.provider)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {(row.provider, row.customer_id, row.pass_key): row for row in rows}


def _mark_handled(session: Session, entries: list[_Claimed], now: datetime) -> None:
    """The entries' events handled, and the events that rode along coalesced into them."""
    plain = [e.row.id for e in entries if not e.result.failures]
    values = {"status": EventStatus.HANDLED.value, "handled_at": now}
    if plain:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_(plain))
            .values(attempts=InboundEvent.attempts + 1, last_error=None, **values)
            .execution_options(synchronize_session=False)
        )
    for entry in entries:
        if entry.result.failures:
            session.execute(
                update(InboundEvent)
                .where(InboundEvent.id == entry.row.id)
                .values(
                    attempts=InboundEvent.attempts + 1,
                    last_error="; ".join(entry.result.failures)[:MAX_ERROR_CHARS],
                    **values,
                )
                .execution_options(synchronize_session=False)
            )
        riders = entry.riders
        if riders:
            carried = session.execute(
                update(InboundEvent)
                .where(InboundEvent.id.in_(riders), InboundEvent.status.in_(UNFINISHED))
                .values(coalesced_into=entry.row.id, **values)
                .returning(InboundEvent.id)
                .execution_options(synchronize_session=False)
            )
            entry.result.coalesced = sorted(carried.scalars())


# --- 2. call -------------------------------------------------------------------------------

_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    """This process's pool of `size` call threads (a forked child makes its own)."""
    key = (os.getpid(), size)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(size, thread_name_prefix="passsync-calls")
        return pool


def _call_all(
    entries: list[_Claimed], ctx: SyncContext, lease: Lease, scope: Scope | None, size: int
) -> None:
    def call(entry: _Claimed) -> None:
        try:
            with scope(entry.row.id) if scope else contextlib.nullcontext():
                for job in entry.jobs:
                    _run(job, ctx, lease)
                    entry.done.append(job)
        except BaseException as exc:  # recorded with the group; re-raised by process_group
            entry.error = exc

    if size <= 1 or len(entries) <= 1:
        for entry in entries:
            call(entry)
        return
    # Each call runs in a copy of this thread's context (the edge's audit batch, its logs).
    contexts = [contextvars.copy_context() for _ in entries]
    list(_pool(size).map(lambda c, e: c.run(call, e), contexts, entries))


# --- 3. record -----------------------------------------------------------------------------


def _record(session: Session, entries: list[_Claimed], out: GroupResult) -> None:
    """One transaction: the events and mapping rows locked (in the claim's order), every
    job whose claim is still ours written, claims released, the applied events handled."""
    event_ids = sorted({e.row.id for e in entries} | {r for e in entries for r in e.riders})
    session.execute(
        select(InboundEvent.id)
        .where(InboundEvent.id.in_(event_ids))
        .order_by(InboundEvent.id)
        .with_for_update()
    ).all()
    rows = {
        row.id: row
        for row in session.scalars(
            select(PassMapping)
            .where(PassMapping.id.in_([job.mapping_id for e in entries for job in e.jobs]))
            .order_by(PassMapping.customer_id, PassMapping.pass_key, PassMapping.provider)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    applied: list[_Claimed] = []
    for entry in entries:
        ours = all(rows[job.mapping_id].claim_token == job.token for job in entry.jobs)
        if entry.error is None and ours:
            for job in entry.jobs:
                _write(session, entry, rows[job.mapping_id], job)
                entry.result.passes.extend(job.results)
            applied.append(entry)
            continue
        for job in entry.jobs:  # as process_event's release: record what is done, free all
            row = rows[job.mapping_id]
            if row.claim_token != job.token:
                continue
            if job in entry.done:
                _write(session, entry, row, job)
            row.claim_token = row.claim_expires_at = None  # the rest stays unconfirmed
        error = entry.error or ClaimLostError(
            "a claim of this event expired and was taken over", retry_after=0.0
        )
        out.handed_on.append(HandedOn(entry.row.id, HandOn.FAILED, error=error))
    _mark_handled(session, applied, utcnow())
    session.commit()
    for entry in applied:
        out.applied[entry.row.id] = entry.result


def _write(session: Session, entry: _Entry, row: PassMapping, job: _Job) -> None:
    announced = row.provider_pass_id  # outbox: the pass id recorded before this job
    _write_job(row, job)
    _emit(session, entry.row.id, row, job, announced)  # outbox
