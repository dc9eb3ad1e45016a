"""The outbox: outbound events written with the change that causes them, their deliveries
(one per destination), the log of every delivery attempt, and disabled destinations."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from worker.db import Base, JSONType, UTCDateTime, utcnow

ID = BigInteger().with_variant(Integer(), "sqlite")
ERROR_LEN = 500


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (next_attempt_at), or for an earlier one
    SENDING = "sending"  # claimed by a worker until lease_until
    DELIVERED = "delivered"  # the destination answered 2xx
    FAILED = "failed"  # refused (4xx other than 410/408/429) or out of retries: given up


UNFINISHED = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)


class OutboxEvent(Base):
    """One outbound event; `webhook_id` is its stable Standard Webhooks id."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_fan_out", "fanned_out_at", "id"),
        Index("ix_outbox_events_customer_id", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(255))
    cause: Mapped[str] = mapped_column(String(128))  # "event:<ledger id>", "campaign:<id>", ...
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set once a delivery row exists for every destination that wants this type.
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class OutboxDelivery(Base):
    """One outbound event on its way to one destination."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("outbox_event_id", "destination", name="uq_outbox_deliveries_event_dest"),
        Index("ix_outbox_deliveries_due", "status", "next_attempt_at"),
        Index("ix_outbox_deliveries_order", "destination", "customer_id", "outbox_event_id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    outbox_event_id: Mapped[int] = mapped_column(
        ID, ForeignKey("outbox_events.id", ondelete="CASCADE")
    )
    destination: Mapped[str] = mapped_column(String(64))
    # Copied from the event: deliveries of one customer to one destination go in event order.
    customer_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(36), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class OutboxAttempt(Base):
    """The delivery log: one row per HTTP attempt (never a header, a secret or a body)."""

    __tablename__ = "outbox_attempts"
    __table_args__ = (Index("ix_outbox_attempts_delivery_id", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ID, ForeignKey("outbox_deliveries.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    # delivered, retry, failed, gave_up, disabled, or late (our lease had expired meanwhile)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class OutboxDestination(Base):
    """A destination's state across workers: disabled after a 410 until re-enabled."""

    __tablename__ = "outbox_destinations"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
