"""Looking at the outbox and acting on it: list deliveries, show one event with its attempt
log, redeliver, and the destinations' state (a 410 disables one until it is re-enabled)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from worker.outbox.emit import envelope
from worker.outbox.models import (
    DeliveryStatus,
    OutboxAttempt,
    OutboxDelivery,
    OutboxDestination,
    OutboxEvent,
)
from worker.outbox.store import enable


@dataclass(frozen=True)
class DeliveryFilter:
    status: str | None = None
    destination: str | None = None
    type: str | None = None
    customer_id: str | None = None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def delivery_dict(delivery: OutboxDelivery, event: OutboxEvent) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event": event.id,
        "webhook_id": event.webhook_id,
        "type": event.type,
        "customer_id": event.customer_id,
        "cause": event.cause,
        "destination": delivery.destination,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": _iso(delivery.next_attempt_at)
        if delivery.status == DeliveryStatus.PENDING
        else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": _iso(delivery.created_at),
        "delivered_at": _iso(delivery.delivered_at),
    }


def list_deliveries(
    session: Session, where: DeliveryFilter, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Deliveries, newest event first."""
    query = select(OutboxDelivery, OutboxEvent).join(
        OutboxEvent, OutboxEvent.id == OutboxDelivery.outbox_event_id
    )
    if where.status is not None:
        query = query.where(OutboxDelivery.status == where.status)
    if where.destination is not None:
        query = query.where(OutboxDelivery.destination == where.destination)
    if where.type is not None:
        query = query.where(OutboxEvent.type == where.type)
    if where.customer_id is not None:
        query = query.where(OutboxEvent.customer_id == where.customer_id)
    query = query.order_by(OutboxEvent.id.desc(), OutboxDelivery.id).limit(limit).offset(offset)
    return [delivery_dict(d, e) for d, e in session.execute(query).all()]


def show_event(session: Session, event_id: int) -> dict[str, Any] | None:
    """One outbound event: its envelope, each delivery and every attempt."""
    event = session.get(OutboxEvent, event_id)
    if event is None:
        return None
    deliveries = session.scalars(
        select(OutboxDelivery)
        .where(OutboxDelivery.outbox_event_id == event_id)
        .order_by(OutboxDelivery.destination)
    ).all()
    found = []
    for delivery in deliveries:
        attempts = session.scalars(
            select(OutboxAttempt)
            .where(OutboxAttempt.delivery_id == delivery.id)
            .order_by(OutboxAttempt.id)
        ).all()
        found.append(delivery_dict(delivery, event) | {"log": [_attempt(a) for a in attempts]})
    return {
        "id": event.id,
        "fanned_out_at": _iso(event.fanned_out_at),
        "envelope": envelope(event),
        "deliveries": found,
    }


def _attempt(row: OutboxAttempt) -> dict[str, Any]:
    return {
        "attempt": row.attempt,
        "started_at": _iso(row.started_at),
        "duration_ms": row.duration_ms,
        "status_code": row.status_code,
        "outcome": row.outcome,
        "error": row.error,
        "next_attempt_at": _iso(row.next_attempt_at),
    }


def destination_states(session: Session, configured: Collection[str]) -> list[dict[str, Any]]:
    """Each configured (or still referenced) destination: enabled or why not, and counts."""
    counts: dict[str, dict[str, int]] = {}
    query = select(OutboxDelivery.destination, OutboxDelivery.status, func.count()).group_by(
        OutboxDelivery.destination, OutboxDelivery.status
    )
    for name, status, count in session.execute(query).all():
        counts.setdefault(name, {})[status] = count
    states = {row.name: row for row in session.scalars(select(OutboxDestination))}
    names = sorted(set(configured) | set(counts) | set(states))
    return [
        _state(name, name in configured, states.get(name), counts.get(name, {})) for name in names
    ]


def _state(
    name: str, configured: bool, row: OutboxDestination | None, counts: Mapping[str, int]
) -> dict[str, Any]:
    disabled = row is not None and row.disabled_at is not None
    return {
        "name": name,
        "configured": configured,
        "enabled": configured and not disabled,
        "disabled_at": _iso(row.disabled_at) if row is not None else None,
        "disabled_reason": row.disabled_reason if row is not None else None,
        "deliveries": {status.value: counts.get(status.value, 0) for status in DeliveryStatus},
    }


def redeliver_event(
    session: Session,
    event_id: int,
    wanted: Mapping[str, Collection[str]],
    *,
    destination: str | None,
    now: datetime,
) -> list[int] | None:
    """Send an event again (to one destination or all that want it) with a fresh schedule,
    creating deliveries for destinations added since; None for an unknown event."""
    event = session.get(OutboxEvent, event_id)
    if event is None:
        return None
    existing = {
        d.destination: d
        for d in session.scalars(
            select(OutboxDelivery).where(OutboxDelivery.outbox_event_id == event_id)
        )
    }
    names = [destination] if destination else sorted(wanted)
    for name in names:
        if name not in existing and event.type in wanted.get(name, ()):
            existing[name] = OutboxDelivery(
                outbox_event_id=event.id, destination=name, customer_id=event.customer_id
            )
            session.add(existing[name])
    ids = []
    for name in names:
        delivery = existing.get(name)
        if delivery is not None and delivery.status != DeliveryStatus.SENDING:
            _reset(delivery, now)
            ids.append(name)
    session.flush()
    return [existing[name].id for name in ids]


def _reset(delivery: OutboxDelivery, now: datetime) -> None:
    delivery.status, delivery.next_attempt_at, delivery.attempts = DeliveryStatus.PENDING, now, 0
    delivery.last_error = delivery.claim_token = delivery.lease_until = None


def redeliver_destination(session: Session, name: str, now: datetime) -> tuple[bool, int]:
    """Re-enable a destination and give its failed deliveries a fresh schedule; returns
    (whether it was disabled, deliveries set pending)."""
    was_disabled = enable(session, name, now)
    changed = session.execute(
        update(OutboxDelivery)
        .where(OutboxDelivery.destination == name, OutboxDelivery.status == DeliveryStatus.FAILED)
        .values(
            status=DeliveryStatus.PENDING.value,
            next_attempt_at=now,
            attempts=0,
            last_error=None,
            updated_at=now,
        )
        .returning(OutboxDelivery.id)
    )
    return was_disabled, len(changed.all())
