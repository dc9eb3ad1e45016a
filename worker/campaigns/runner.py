"""Run one chunk: each recipient becomes a canonical event in the inbound ledger (source
"campaign", id "<campaign>:<recipient>:1") applied by the sync engine.

Exactly once comes from the data: the ledger's unique (source, event id), the engine's
claims and "already handled", and the recipient's state written in the same transaction as
the engine's result. A pass that already matches is skipped by the engine without a call.

Like the engine, this commits as it goes (one short transaction per step, none open while
the provider is called), so it takes the Database rather than a session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from worker.campaigns.models import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    RecipientState,
)
from worker.db import Database, utcnow
from worker.inbound.ledger import record_events
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent, Customer
from worker.providers.credentials import CredentialRefusedError
from worker.providers.errors import ProviderError, RateLimitedError, TransientError
from worker.sync.engine import EventResult, Outcome, PassBusyError, SyncContext, process_event
from worker.sync.failures import record_failure
from worker.sync.models import PassMapping, PassStatus
from worker.sync.rules import Verb, content_hash, plan_event

log = logging.getLogger("passsync.campaigns")

SOURCE = "campaign"
NO_CALL = (Outcome.UNCHANGED, Outcome.STALE, Outcome.ABSENT)


BUSY_MIN_WAIT = 0.1
BUSY_MAX_WAIT = 1.0


@dataclass(frozen=True)
class Wait:
    seconds: float
    busy: bool  # only this recipient's pass is busy; a rate limit stops the whole chunk


@dataclass
class ChunkResult:
    finished: int = 0
    released: int = 0
    # Set when the provider or the shared limiter asked everyone to wait: retry the chunk.
    retry_after: float | None = None
    stopped: str | None = None


def event_id(campaign_id: int, recipient_id: int, version: int = 1) -> str:
    return f"{campaign_id}:{recipient_id}:{version}"


def run_chunk(
    db: Database,
    ctx: SyncContext,
    campaign_id: int,
    chunk_id: str,
    *,
    max_seconds: float,
    max_attempts: int,
    clock: Callable[[], float] = time.monotonic,
) -> ChunkResult:
    """Apply the chunk's queued recipients in order until done, the time is up (the rest
    go back to pending), the campaign stops, or a rate limit says wait."""
    deadline = clock() + max_seconds
    result = ChunkResult()
    ids = _chunk_ids(db, campaign_id, chunk_id)
    for index, recipient_id in enumerate(ids):
        if index and clock() > deadline:
            result.released += _release(db, ids[index:], chunk_id)
            result.stopped = "time slice used up"
            break
        step = _run_one(db, ctx, campaign_id, chunk_id, recipient_id, max_attempts=max_attempts)
        if isinstance(step, Wait):
            # Kept queued in this chunk for the task's retry: a busy pass alone, or on a
            # rate limit every recipient left (the whole fleet is waiting).
            _touch(db, [recipient_id] if step.busy else ids[index:], chunk_id)
            result.retry_after = min(result.retry_after or step.seconds, step.seconds)
            if step.busy:
                continue
            break
        if step == "stopped":
            result.released += _release(db, ids[index:], chunk_id)
            result.stopped = "campaign not running"
            break
        result.finished += step == "finished"
        result.released += step == "released"
    return result


def _chunk_ids(db: Database, campaign_id: int, chunk_id: str) -> list[int]:
    with db.session() as session:
        return list(
            session.scalars(
                select(CampaignRecipient.id)
                .where(
                    CampaignRecipient.campaign_id == campaign_id,
                    CampaignRecipient.chunk == chunk_id,
                    CampaignRecipient.state == RecipientState.QUEUED,
                )
                .order_by(CampaignRecipient.id)
            )
        )


def _run_one(
    db: Database,
    ctx: SyncContext,
    campaign_id: int,
    chunk_id: str,
    recipient_id: int,
    *,
    max_attempts: int,
) -> str | Wait:
    """ "finished", "released", "skipped" (not ours any more), "stopped", or a wait."""
    with db.session() as session:
        begun = _begin(session, ctx, campaign_id, chunk_id, recipient_id)
    if not isinstance(begun, int):
        return begun
    try:
        with db.session() as session:
            applied = process_event(session, begun, ctx)
            _finish(session, recipient_id, applied)
        return "finished"
    except PassBusyError as exc:
        # Another attempt holds the pass (its claim expires): wait a little, not hot-loop.
        return Wait(min(max(exc.retry_after, BUSY_MIN_WAIT), BUSY_MAX_WAIT), busy=True)
    except (RateLimitedError, CredentialRefusedError) as exc:
        # The provider paces us, or refuses the account's credential until a rotation: the
        # chunk waits (no attempt used), as the rest of the fleet does.
        _ledger_failure(db, begun, exc.message, count=False, final=False)
        return Wait(max(exc.retry_after, 0.0), busy=False)
    except TransientError as exc:
        return _transient(db, recipient_id, begun, exc.message, max_attempts)
    except ProviderError as exc:
        _fail(db, recipient_id, begun, exc.message)
        return "finished"
    except Exception as exc:
        # A database hiccup or a bug: the type only (its text may hold customer data).
        log.exception("campaign %s recipient %s raised %s", campaign_id, recipient_id, type(exc))
        return _transient(db, recipient_id, begun, type(exc).__name__, max_attempts)


def _begin(
    session: Session, ctx: SyncContext, campaign_id: int, chunk_id: str, recipient_id: int
) -> int | str:
    """Claim the recipient (queued in this chunk, campaign running) and record its event;
    the ledger id, or why not."""
    campaign = session.get(Campaign, campaign_id, populate_existing=True)
    if campaign is None or campaign.status != CampaignStatus.RUNNING:
        return "stopped"
    claimed = session.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.id == recipient_id,
            CampaignRecipient.chunk == chunk_id,
            CampaignRecipient.state == RecipientState.QUEUED,
        )
        .values(state=RecipientState.RUNNING, updated_at=utcnow())
        .returning(CampaignRecipient.payload, CampaignRecipient.ledger_id)
    ).first()
    if claimed is None:
        return "skipped"
    payload, ledger_id = claimed
    event = to_event(campaign, recipient_id, payload)
    if campaign.dry_run:
        _dry_run(session, ctx, recipient_id, event)
        return "finished"
    if ledger_id is None:
        ledger_id = _record(session, event)
        session.execute(
            update(CampaignRecipient)
            .where(CampaignRecipient.id == recipient_id)
            .values(ledger_id=ledger_id)
        )
    return int(ledger_id)


def to_event(campaign: Campaign, recipient_id: int, payload: dict[str, Any]) -> CanonicalEvent:
    """The recipient as a canonical event. It occurred when the campaign was created (its
    data is that old): a pass that already reflects a newer event is left alone."""
    return CanonicalEvent(
        id=event_id(campaign.id, recipient_id),
        type=campaign.event_type,
        occurred_at=campaign.created_at,
        customer=Customer.model_validate(payload["customer"]),
        data={**campaign.data, **payload.get("data", {})},
    )


def _record(session: Session, event: CanonicalEvent) -> int:
    recorded = record_events(session, SOURCE, [event])
    if recorded.accepted_ids:
        return recorded.accepted_ids[0]
    return int(
        session.scalars(
            select(InboundEvent.id).where(
                InboundEvent.source == SOURCE, InboundEvent.event_id == event.id
            )
        ).one()
    )


def _finish(session: Session, recipient_id: int, applied: EventResult) -> None:
    """In the engine's own transaction: the recipient's state and the event's outcome."""
    outcomes = [p.outcome for p in applied.passes]
    if applied.already_handled:
        state, outcome = RecipientState.DONE, "already handled"
    else:
        skipped = all(o in NO_CALL for o in outcomes)
        state = RecipientState.SKIPPED if skipped else RecipientState.DONE
        outcome = ",".join(f"{p.pass_key}:{p.outcome}" for p in applied.passes) or "no rule"
    failures = "; ".join(applied.failures) or None
    _set_final(session, recipient_id, state, outcome=outcome[:255], error=failures)


def _set_final(
    session: Session,
    recipient_id: int,
    state: RecipientState,
    *,
    outcome: str | None,
    error: str | None,
    calls: int | None = None,
) -> None:
    now = utcnow()
    session.execute(
        update(CampaignRecipient)
        .where(CampaignRecipient.id == recipient_id)
        .values(
            state=state,
            outcome=outcome,
            error=error,
            calls=calls,
            chunk=None,
            updated_at=now,
            finished_at=now,
        )
    )


def _dry_run(session: Session, ctx: SyncContext, recipient_id: int, event: CanonicalEvent) -> None:
    """Count the calls the engine would make, from our own records only (no call)."""
    calls, outcomes = 0, []
    for plan in plan_event(event, ctx.rules):
        mapping = session.scalars(
            select(PassMapping).where(
                PassMapping.provider == (ctx.rules.account_of(plan.pass_key) or ctx.account),
                PassMapping.customer_id == event.customer.id,
                PassMapping.pass_key == plan.pass_key,
            )
        ).first()
        live = mapping is not None and mapping.status in (PassStatus.ACTIVE, PassStatus.VOIDED)
        for step in plan.steps:
            verb = _would(step.verb, step.fields, mapping, live)
            calls += verb != "skip"
            outcomes.append(f"{plan.pass_key}:would_{verb}")
    state = RecipientState.DONE if calls else RecipientState.SKIPPED
    outcome = ",".join(outcomes)[:255] or "no rule"
    _set_final(session, recipient_id, state, outcome=outcome, error=None, calls=calls)


def _would(verb: Verb, fields: dict[str, Any], mapping: PassMapping | None, live: bool) -> str:
    if verb is not Verb.UPSERT:
        return verb.value if live else "skip"
    if not live or mapping is None:
        return "create"
    same = mapping.content_hash == content_hash(mapping.template_id or "", fields)
    return "skip" if same and mapping.unconfirmed_since is None else "update"


def _transient(
    db: Database, recipient_id: int, ledger_id: int, reason: str, max_attempts: int
) -> str:
    attempts = _ledger_failure(db, ledger_id, reason, count=True, final=False)
    if attempts >= max_attempts:
        _fail(db, recipient_id, ledger_id, f"gave up after {attempts} attempts: {reason}")
        return "finished"
    return "released" if _release(db, [recipient_id], None) else "skipped"


def _fail(db: Database, recipient_id: int, ledger_id: int, reason: str) -> None:
    """Refused for good: the recipient fails and its event goes to the dead letter."""
    with db.session() as session:
        record_failure(session, ledger_id, f"rejected: {reason}", final=True, count=True)
        _set_final(
            session, recipient_id, RecipientState.FAILED, outcome="failed", error=reason[:2000]
        )


def _ledger_failure(db: Database, ledger_id: int, reason: str, *, count: bool, final: bool) -> int:
    with db.session() as session:
        return record_failure(session, ledger_id, f"transient: {reason}", final=final, count=count)


def _release(db: Database, ids: list[int], chunk_id: str | None) -> int:
    """Back to pending (the dispatcher hands them out again); only rows still open here."""
    if not ids:
        return 0
    where: list[ColumnElement[bool]] = [
        CampaignRecipient.id.in_(ids),
        CampaignRecipient.state.in_([RecipientState.QUEUED, RecipientState.RUNNING]),
    ]
    if chunk_id is not None:
        where.append(CampaignRecipient.chunk == chunk_id)
    with db.session() as session:
        result = session.execute(
            update(CampaignRecipient)
            .where(*where)
            .values(state=RecipientState.PENDING, chunk=None, updated_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _touch(db: Database, ids: list[int], chunk_id: str) -> None:
    """Still ours, waiting for a retry: the running one goes back to queued in this chunk."""
    with db.session() as session:
        session.execute(
            update(CampaignRecipient)
            .where(
                CampaignRecipient.id.in_(ids),
                CampaignRecipient.chunk == chunk_id,
                CampaignRecipient.state.in_([RecipientState.QUEUED, RecipientState.RUNNING]),
            )
            .values(state=RecipientState.QUEUED, updated_at=utcnow())
        )
