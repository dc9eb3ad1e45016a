"""The inbound ledger: every accepted event, unique per (source, event id)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from worker.db import Base, JSONType, UTCDateTime, utcnow


class EventStatus(StrEnum):
    PENDING = "pending"  # accepted, waiting for a worker
    HANDLED = "handled"  # applied (or coalesced into a later event's call: see coalesced_into)
    FAILED = "failed"  # the last attempt failed; a retry is scheduled
    DEAD = "dead"  # dead letter: rejected by the provider or out of attempts; replay to retry
    IGNORED = "ignored"  # answered 2xx, never processed: its source maps no such event (why:
    # last_error)


class InboundEvent(Base):
    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_inbound_events_source_event_id"),
        Index("ix_inbound_events_status_received_at", "status", "received_at"),
        Index("ix_inbound_events_customer_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    source: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(255))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Set by the sweeper and by replays (the receiver's own publish is at received_at); the
    # sweeper waits longer after each of its own publishes, so a long queue is not flooded.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    sweeps: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # The ledger id of the event whose provider call carried this one's state.
    coalesced_into: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), default=None
    )
