"""Outbox bookkeeping in SQL: fan-out to destinations, claiming due deliveries in order,
recording each attempt and the schedule of the next one.

Every wait lives in `next_attempt_at`, never in a broker countdown. Claims are short
transactions: `FOR UPDATE SKIP LOCKED` on Postgres; SQLite's write lock (every transaction
begins IMMEDIATE) serializes them. A delivery is claimed only when no earlier event of the
same customer is still pending or being sent to the same destination, so a customer's
events arrive in the order they were committed (or the earlier one was given up).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from worker.config import OutboundSettings
from worker.outbox.emit import body_of
from worker.outbox.models import (
    ERROR_LEN,
    UNFINISHED,
    DeliveryStatus,
    OutboxAttempt,
    OutboxDelivery,
    OutboxDestination,
    OutboxEvent,
)

FAN_OUT_BATCH = 500


@dataclass(frozen=True)
class Claimed:
    """A delivery taken by this worker: everything the POST needs, no session."""

    delivery_id: int
    token: str
    attempt: int
    destination: str
    webhook_id: str
    body: str


@dataclass(frozen=True)
class SendResult:
    """What one POST came to; `error` is a short, secret-free label."""

    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


class Verdict:
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"  # refused by the destination
    GAVE_UP = "gave_up"  # out of retries
    DISABLED = "disabled"  # 410: the destination is disabled
    LATE = "late"  # our lease expired and another worker took the delivery


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def fan_out(session: Session, wanted: Mapping[str, Collection[str]], now: datetime) -> int:
    """Create a delivery per destination that wants each new event's type; returns events.

    Not SKIP LOCKED: concurrent fan-outs wait for each other, so delivery order follows
    event order.
    """
    query = (
        select(OutboxEvent)
        .where(OutboxEvent.fanned_out_at.is_(None))
        .order_by(OutboxEvent.id)
        .limit(FAN_OUT_BATCH)
    )
    if _is_postgres(session):
        query = query.with_for_update()
    rows = list(session.scalars(query))
    for row in rows:
        for name, types in sorted(wanted.items()):
            if row.type in types:
                session.add(_delivery(row, name, now))
        row.fanned_out_at = now
    return len(rows)


def _delivery(row: OutboxEvent, destination: str, now: datetime) -> OutboxDelivery:
    return OutboxDelivery(
        outbox_event_id=row.id,
        destination=destination,
        customer_id=row.customer_id,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )


def disabled_destinations(session: Session) -> set[str]:
    query = select(OutboxDestination.name).where(OutboxDestination.disabled_at.is_not(None))
    return set(session.scalars(query))


def claim_due(
    session: Session,
    destinations: Collection[str],
    *,
    now: datetime,
    lease_seconds: float,
    limit: int,
) -> list[Claimed]:
    """Take up to `limit` due deliveries to enabled `destinations`, oldest event first."""
    names = sorted(set(destinations) - disabled_destinations(session))
    if not names:
        return []
    rows = list(session.scalars(_due_query(session, names, now, limit)))
    lease = now + timedelta(seconds=lease_seconds)
    claimed = []
    for row in rows:
        token = str(uuid.uuid4())
        row.status, row.claim_token, row.lease_until = DeliveryStatus.SENDING, token, lease
        row.attempts += 1  # counted at claim: a worker that dies mid-POST still used one
        event = session.get(OutboxEvent, row.outbox_event_id)
        assert event is not None  # deliveries cascade with their event
        claimed.append(
            Claimed(row.id, token, row.attempts, row.destination, event.webhook_id, body_of(event))
        )
    return claimed


def _due_query(
    session: Session, names: list[str], now: datetime, limit: int
) -> Select[OutboxDelivery]:
    delivery = OutboxDelivery
    earlier = aliased(OutboxDelivery)
    blocked = exists().where(
        earlier.destination == delivery.destination,
        earlier.customer_id == delivery.customer_id,
        earlier.outbox_event_id < delivery.outbox_event_id,
        earlier.status.in_(UNFINISHED),
    )
    due = or_(
        and_(delivery.status == DeliveryStatus.PENDING, delivery.next_attempt_at <= now),
        # A worker died while sending: its lease ran out.
        and_(delivery.status == DeliveryStatus.SENDING, delivery.lease_until < now),
    )
    query = (
        select(delivery)
        .where(delivery.destination.in_(names), due, ~blocked)
        .order_by(delivery.outbox_event_id, delivery.id)
        .limit(limit)
    )
    if _is_postgres(session):
        query = query.with_for_update(skip_locked=True, of=delivery)
    return query


def classify(result: SendResult) -> str:
    """2xx delivered; 410 disabled; 408, 429, 5xx, 3xx and network errors retry; other
    4xx failed (3xx is a failure, never followed, per Standard Webhooks)."""
    code = result.status_code
    if code is None:
        return Verdict.RETRY
    if 200 <= code < 300:
        return Verdict.DELIVERED
    if code == 410:
        return Verdict.DISABLED
    if 400 <= code < 500 and code not in (408, 429):
        return Verdict.FAILED
    return Verdict.RETRY


def next_wait(
    attempt: int,
    result: SendResult,
    settings: OutboundSettings,
    rng: random.Random,
) -> float | None:
    """Seconds until the next attempt after failed attempt number `attempt`, or None when
    the schedule is used up. Jittered; a Retry-After is honoured (up to its cap)."""
    schedule: Sequence[float] = settings.retry_schedule_seconds
    if attempt > len(schedule):
        return None
    base = schedule[attempt - 1]
    wait = base * rng.uniform(1 - settings.jitter, 1 + settings.jitter)
    if result.retry_after is not None:
        wait = max(wait, min(result.retry_after, settings.max_retry_after_seconds))
    return wait


def record(
    session: Session,
    claimed: Claimed,
    result: SendResult,
    settings: OutboundSettings,
    *,
    now: datetime,
    rng: random.Random,
) -> str:
    """Write the attempt to the log and move the delivery on; returns the verdict."""
    row = session.execute(
        select(OutboxDelivery)
        .where(OutboxDelivery.id == claimed.delivery_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    verdict = classify(result)
    nxt: datetime | None = None
    if row is None or row.claim_token != claimed.token:
        verdict = Verdict.LATE  # only logged: the delivery belongs to another attempt now
    else:
        verdict, nxt = _apply(
            session, row, claimed, result, verdict, settings=settings, now=now, rng=rng
        )
    if row is not None:
        session.add(_attempt_row(claimed, result, verdict, nxt))
    return verdict


def _apply(
    session: Session,
    row: OutboxDelivery,
    claimed: Claimed,
    result: SendResult,
    verdict: str,
    *,
    settings: OutboundSettings,
    now: datetime,
    rng: random.Random,
) -> tuple[str, datetime | None]:
    row.claim_token = row.lease_until = None
    row.last_status_code = result.status_code
    row.last_error = _error_text(result)
    if verdict == Verdict.DELIVERED:
        row.status, row.delivered_at, row.last_error = DeliveryStatus.DELIVERED, now, None
        return verdict, None
    if verdict == Verdict.DISABLED:
        disable(session, claimed.destination, "answered 410 Gone", now)
        row.status, row.next_attempt_at = DeliveryStatus.PENDING, now  # sent once re-enabled
        return verdict, None
    if verdict == Verdict.FAILED:
        row.status = DeliveryStatus.FAILED
        return verdict, None
    wait = next_wait(claimed.attempt, result, settings, rng)
    if wait is None:
        row.status = DeliveryStatus.FAILED
        row.last_error = f"gave up after {claimed.attempt} attempts: {row.last_error}"[:ERROR_LEN]
        return Verdict.GAVE_UP, None
    row.status, row.next_attempt_at = DeliveryStatus.PENDING, now + timedelta(seconds=wait)
    return verdict, row.next_attempt_at


def _error_text(result: SendResult) -> str | None:
    if result.error:
        return result.error[:ERROR_LEN]
    if result.status_code is not None and not 200 <= result.status_code < 300:
        return f"HTTP {result.status_code}"
    return None


def _attempt_row(
    claimed: Claimed, result: SendResult, verdict: str, nxt: datetime | None
) -> OutboxAttempt:
    return OutboxAttempt(
        delivery_id=claimed.delivery_id,
        attempt=claimed.attempt,
        started_at=result.started_at,
        duration_ms=result.duration_ms,
        status_code=result.status_code,
        outcome=verdict,
        error=_error_text(result),
        next_attempt_at=nxt,
    )


def disable(session: Session, name: str, reason: str, now: datetime) -> None:
    """Mark a destination disabled for every worker (until `enable`)."""
    dialect = postgresql if _is_postgres(session) else sqlite
    session.execute(
        dialect.insert(OutboxDestination)
        .values(name=name, updated_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    row = session.execute(
        select(OutboxDestination)
        .where(OutboxDestination.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    if row.disabled_at is None:
        row.disabled_at, row.disabled_reason = now, reason
    row.updated_at = now


def enable(session: Session, name: str, now: datetime) -> bool:
    """Re-enable a destination; True when it was disabled."""
    row = session.get(OutboxDestination, name, with_for_update=True)
    if row is None or row.disabled_at is None:
        return False
    row.disabled_at = row.disabled_reason = None
    row.updated_at = now
    return True
