"""Thin tasks: take ids, open a session, call one domain function, commit."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from worker.audit import Actor, purge_expired, retention_cutoff
from worker.inbound.status import stale_pending_ids, touch
from worker.observability import logs, metrics, tracing
from worker.observability.tracing import TRACE_HEADERS
from worker.providers.errors import ProviderError, RateLimitedError, TransientError
from worker.ratelimit.pacing import delays
from worker.sync.engine import EventNotFoundError, EventResult, PassBusyError
from worker.sync.failures import record_failure
from worker.sync.group import HandedOn, HandOn
from worker.sync.group import process_group as apply_events
from worker.tasks import observe  # noqa: F401 - its signals: log context per task
from worker.tasks.app import REALTIME_QUEUE, celery_app
from worker.tasks.runtime import Runtime, get_runtime

log = logging.getLogger("passsync.tasks")


class WaitingForPass(Exception):
    """The reason given for a retry that waits for a claimed pass."""


# Celery logs every retry ("Retry in 1s"); a wait for a claimed pass is not a failure and may
# repeat every second for a while, so the task logs it once per event instead.
class _QuietBusyWaits(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        reason = str(args.get("exc", "")) if isinstance(args, dict) else ""
        return not reason.endswith(repr(WaitingForPass()))


logging.getLogger("celery.app.trace").addFilter(_QuietBusyWaits())


@celery_app.task(
    name="passsync.process_event",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def process_event(self: Any, event_id: int, paced: bool = False, waiting: bool = False) -> str:
    """Apply one ledger event; transient failures retry with bounded, jittered backoff, a
    permanent rejection (or the last attempt) sends it to the dead letter.

    Unless `paced`, the event first asks the fleet's pacer when its customer may be applied
    (leading and trailing edge, sync.coalesce_window_ms): at once, or at the window's end.
    `waiting` marks the retries of an event that already waited for a claimed pass (logged
    once); they are not paced again.
    """
    runtime = get_runtime()
    logs.bind(
        event_id=event_id, actor=f"event:{event_id}", account=runtime.settings.sync.default_account
    )
    with tracing.span(
        "passsync.process_event", parent=trace_parent(self.request), event_id=event_id
    ):
        return _process(self, runtime, event_id, waiting=waiting, paced=paced)


def _process(self: Any, runtime: Runtime, event_id: int, *, waiting: bool, paced: bool) -> str:
    try:
        # A group of one (worker.sync.group): the pacer is asked inside the claim
        # transaction, and the audit rows are written after the record commits.
        with runtime.holding_audit(), runtime.db.session() as session:
            outcome = apply_events(
                session,
                [event_id],
                runtime.sync,
                pace=None if paced else _pacing(runtime),
                scope=lambda i: runtime.audited(Actor.event(i)),
            )
        result = outcome.only(event_id)
    except EventNotFoundError:
        log.warning("event %s is not in the ledger; dropping the message", event_id)
        metrics.event_attempt("missing")
        return "missing"
    except PassBusyError as exc:
        # Another attempt holds the pass: waiting is not failing, so no attempt is used.
        metrics.event_attempt("busy")
        if not waiting:
            log.info("event %s waits: %s", event_id, exc)
        raise self.retry(
            countdown=busy_countdown(exc.retry_after),
            max_retries=None,
            kwargs={"waiting": True, "paced": True},
            exc=WaitingForPass(),
        ) from None
    except TransientError as exc:
        return _retry_or_fail(self, event_id, exc, exc.message)
    except ProviderError as exc:
        _fail(event_id, dead_letter_reason(exc), final=True)
        metrics.dead_letter("rejected")
        log.warning("event %s is dead: %s", event_id, exc.message)
        return "dead"
    except Exception as exc:
        # A database hiccup ("database is locked", a dropped connection) or a bug: retry with
        # the same bounded budget, with the type on record (its text may hold customer data).
        log.exception("event %s raised %s", event_id, type(exc).__name__)
        return _retry_or_fail(
            self, event_id, TransientError(type(exc).__name__), type(exc).__name__
        )
    if isinstance(result, float):  # its customer was applied less than a window ago
        raise self.retry(countdown=result, max_retries=None, kwargs={"paced": True})
    return _finished(event_id, result)


def _finished(event_id: int, result: EventResult) -> str:
    if result.already_handled:
        metrics.event_finished(["duplicate"])
        return "duplicate"
    outcomes = [str(p.outcome) for p in result.passes] or ["no-rule"]
    metrics.event_finished(outcomes, coalesced=len(result.coalesced))
    summary = ",".join(f"{p.pass_key}:{p.outcome}" for p in result.passes) or "no-rule"
    log.info("event %s handled: %s", event_id, summary, extra={"outcome": summary})
    return summary


def _pacing(runtime: Runtime) -> Callable[[list[str]], list[float]] | None:
    """The group engine's pace: the fleet's pacer, asked for a whole group at once."""
    pacer = runtime.pacer
    if pacer is None:
        return None
    return lambda customers: delays(pacer, customers)


def trace_parent(request: Any) -> dict[str, str] | None:
    """The W3C headers the message carried: top-level message headers on a worker, the
    `headers` option under `apply()`."""
    nested = getattr(request, "headers", None) or {}
    found = {h: str(v) for h in TRACE_HEADERS if (v := getattr(request, h, None) or nested.get(h))}
    return found or None


def _retry_or_fail(task: Any, event_id: int, exc: TransientError, reason: str) -> str:
    runtime = get_runtime()
    sync = runtime.settings.sync
    # A 429 is the provider pacing us, not the event failing: it does not use up attempts.
    limited = isinstance(exc, RateLimitedError)
    attempts = _fail(event_id, f"transient: {reason}", final=False, count=not limited)
    if attempts >= sync.max_attempts:
        _fail(event_id, f"gave up after {attempts} attempts: {reason}", final=True, count=False)
        metrics.dead_letter("gave_up")
        log.warning("event %s is dead after %d attempts (%s)", event_id, attempts, reason)
        return "dead"
    metrics.event_attempt("rate_limited" if limited else "retry")
    countdown = retry_countdown(
        attempts,
        exc,
        base=sync.retry_base_seconds,
        cap=sync.retry_max_seconds,
        visibility_timeout=runtime.settings.celery.visibility_timeout_seconds,
    )
    raise task.retry(countdown=countdown, max_retries=None)


def retry_countdown(
    attempts: int, exc: TransientError, *, base: float, cap: float, visibility_timeout: int
) -> float:
    """Jittered exponential backoff, or the provider's Retry-After; always well below the
    broker's visibility timeout so a waiting retry is never redelivered as a duplicate."""
    if isinstance(exc, RateLimitedError):
        wait = exc.retry_after + random.uniform(0, 1)  # noqa: S311 - jitter, not crypto
    else:
        wait = random.uniform(0, base * 2 ** max(0, attempts - 1))  # noqa: S311
    return max(0.0, min(wait, cap, visibility_timeout / 2))


BUSY_WAIT_MAX_SECONDS = 1.0


def busy_countdown(retry_after: float) -> float:
    """How long to wait for a pass another attempt holds: short, since that attempt usually
    ends within a provider call; a crashed one's claim lapses within sync.claim_seconds."""
    jitter = random.uniform(0, 0.2)  # noqa: S311 - spreads the waiters, not crypto
    return min(max(retry_after, 0.05), BUSY_WAIT_MAX_SECONDS) + jitter


def dead_letter_reason(exc: ProviderError) -> str:
    """The provider's refusal with every reason it gave (once each)."""
    extra = [m for m in getattr(exc, "messages", []) if m and m not in exc.message]
    return "rejected: " + "; ".join([exc.message, *extra])


def _fail(event_id: int, error: str, *, final: bool, count: bool = True) -> int:
    with get_runtime().db.session() as session:
        return record_failure(session, event_id, error, final=final, count=count)


@celery_app.task(name="passsync.sweep_pending", acks_late=True)
def sweep_pending() -> int:
    """Re-enqueue accepted events that never finished (lost by the broker or never sent)."""
    runtime = get_runtime()
    sync = runtime.settings.sync
    with runtime.db.session() as session:
        ids = stale_pending_ids(
            session,
            fresh_after=timedelta(seconds=sync.sweep_stale_after_seconds),
            retry_grace=timedelta(seconds=sync.retry_max_seconds),
        )
        touch(session, ids)
    if ids:
        enqueue_events(ids, countdown=0)
        log.info("sweeper re-enqueued %d pending events", len(ids))
    return len(ids)


def recover_events(held: list[int], *, exclude: set[int]) -> int:
    """After a worker died: send again the events it held, and the never-attempted events
    older than the lease that no live worker holds (a message lost with the worker's socket).
    Events behind a long queue may be sent twice; the ledger answers those as duplicates."""
    runtime = get_runtime()
    sync = runtime.settings.sync
    with runtime.db.session() as session:
        stale = stale_pending_ids(
            session,
            fresh_after=timedelta(seconds=sync.claim_seconds),
            retry_grace=timedelta(seconds=sync.retry_max_seconds),
        )
        lost = [i for i in stale if i not in exclude and i not in held]
        touch(session, lost)
    ids = sorted({*held, *lost})
    enqueue_events(ids, countdown=0)
    if lost:
        log.warning("re-enqueued %d events a dead worker may have taken unseen", len(lost))
    return len(ids)


@celery_app.task(name="passsync.purge_audit", acks_late=True)
def purge_audit() -> int:
    """Delete audit rows older than audit.retention_days (in short batches)."""
    runtime = get_runtime()
    cutoff = retention_cutoff(runtime.settings.audit.retention_days)
    if cutoff is None:
        return 0
    deleted = purge_expired(runtime.db, before=cutoff)
    if deleted:
        log.info("audit purge deleted %d rows older than %s", deleted, cutoff.isoformat())
    return deleted


def enqueue_events(ids: list[int], *, countdown: float = 0.0) -> None:
    """Publish one task per ledger id over one producer connection; raises if the broker is down.

    No coalescing wait here: each task asks the pacer (see process_event), so a quiet
    customer's event runs at once and only a burst waits for its window's end.
    """
    if not ids:
        return
    options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
    with celery_app.producer_or_acquire() as producer:
        for event_id in ids:
            headers = tracing.headers_for(event_id)
            traced = {"headers": headers} if headers else {}
            process_event.apply_async(
                args=[event_id], queue=REALTIME_QUEUE, producer=producer, **options, **traced
            )


# A published message per id costs the receiver ~0.5 ms of CPU each, and a task per event
# costs a worker as much again: a commit group travels as messages of this many ids, each
# applied in one task (bounded: one task stays short).
DISPATCH_CHUNK = 50


@celery_app.task(name="passsync.dispatch_events", acks_late=True, reject_on_worker_lost=True)
def dispatch_events_task(ids: list[int], traces: dict[str, dict[str, str]] | None = None) -> int:
    """Apply a commit group's events together in this one task (worker.sync.group: one claim
    and one record transaction for the group, the provider calls `sync.group_concurrency`
    at a time). An event that must wait (paced, a claimed pass) or fails goes on as its own
    process_event task, with the full retry and dead-letter policy. With trace headers
    (tracing on) the group is fanned out into one process_event task each instead, so that
    each event continues its own trace."""
    if traces:
        with tracing.carriers({int(k): v for k, v in traces.items()}):
            enqueue_events(ids)
        return len(ids)
    return apply_group(ids)


def apply_group(ids: list[int]) -> int:
    """Apply `ids` as one group; how many were applied (or found already handled) here."""
    runtime = get_runtime()
    try:
        with runtime.holding_audit(), runtime.db.session() as session:
            result = apply_events(
                session,
                ids,
                runtime.sync,
                pace=_pacing(runtime),
                scope=lambda event_id: runtime.audited(Actor.event(event_id)),
                concurrency=1 if runtime.db.is_sqlite else runtime.settings.sync.group_concurrency,
            )
    except Exception as exc:
        # The database failed the claim or the record: nothing of the group was recorded (a
        # claim taken lapses with its lease); each event starts over as its own task.
        log.warning("a group of %d events failed (%s); each goes on alone", len(ids), exc)
        for event_id in ids:
            _own_task(event_id, countdown=0.0)
        return 0
    for event_id, applied in result.applied.items():
        _finished(event_id, applied)
    for handed in result.handed_on:
        _hand_on(handed)
    return len(result.applied)


def _hand_on(handed: HandedOn) -> None:
    if handed.reason == HandOn.FAILED:
        # Busy, transient, rejected, or a bug: the event's own task starts over from the
        # ledger with the whole policy (no attempt is counted here).
        log.info("event %s leaves its group (%s)", handed.event_id, type(handed.error).__name__)
    countdown = handed.wait
    if handed.reason == HandOn.BUSY:
        countdown = busy_countdown(handed.wait)
    _own_task(handed.event_id, countdown=countdown)


def _own_task(event_id: int, *, countdown: float) -> None:
    options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
    process_event.apply_async(
        args=[event_id], kwargs={"paced": True}, queue=REALTIME_QUEUE, **options
    )


def dispatch_events(ids: list[int]) -> None:
    """The receiver's enqueue: a lone id goes straight to its task, a group as one message."""
    if len(ids) == 1:
        enqueue_events(ids)
        return
    traces = tracing.carriers_now()
    with celery_app.producer_or_acquire() as producer:
        for start in range(0, len(ids), DISPATCH_CHUNK):
            chunk = ids[start : start + DISPATCH_CHUNK]
            kwargs = {"traces": {str(i): traces[i] for i in chunk if i in traces}} if traces else {}
            dispatch_events_task.apply_async(
                args=[chunk], kwargs=kwargs, queue=REALTIME_QUEUE, producer=producer
            )
