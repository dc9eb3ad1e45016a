"""Campaigns, their recipients (one row per customer) and the rows a file import refused."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from worker.db import Base, JSONType, UTCDateTime, utcnow

ID = BigInteger().with_variant(Integer(), "sqlite")


class CampaignStatus(StrEnum):
    DRAFT = "draft"  # created (recipients imported), not started
    SCHEDULED = "scheduled"  # started with a start time in the future: beat starts it
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"  # every recipient finished
    CANCELLED = "cancelled"
    ENDED = "ended"  # its end time passed first; the rest were not sent


FINAL = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.ENDED)


class RecipientState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # handed to a bulk task (`chunk`)
    RUNNING = "running"  # its event is being applied
    DONE = "done"  # the provider was called and the pass is as asked
    SKIPPED = "skipped"  # nothing to do: the pass already matched (or is newer); no call
    FAILED = "failed"  # refused by the provider or out of attempts (the event is dead)
    CANCELLED = "cancelled"  # the campaign was cancelled or ended first


OPEN_STATES = (RecipientState.PENDING, RecipientState.QUEUED, RecipientState.RUNNING)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT)
    # The canonical event type each recipient becomes: the configured rules decide the passes.
    event_type: Mapped[str] = mapped_column(String(128))
    rule: Mapped[str | None] = mapped_column(String(255), default=None)
    template: Mapped[str | None] = mapped_column(String(255), default=None)
    # Merged under each recipient's own `data` (row values win).
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_by: Mapped[str] = mapped_column(String(255), default="system:passsync")
    total: Mapped[int] = mapped_column(Integer, default=0)
    import_errors: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)


class CampaignRecipient(Base):
    __tablename__ = "campaign_recipients"
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", name="uq_campaign_recipients_customer"),
        Index("ix_campaign_recipients_state", "campaign_id", "state", "id"),
        Index("ix_campaign_recipients_chunk", "campaign_id", "chunk"),
        Index("ix_campaign_recipients_finished", "campaign_id", "finished_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ID, ForeignKey("campaigns.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)  # in the source file (1 = first line)
    customer_id: Mapped[str] = mapped_column(String(255))
    # {"customer": {...}, "data": {...}}: the canonical event's customer and data.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(16), default=RecipientState.PENDING)
    chunk: Mapped[str | None] = mapped_column(String(32), default=None)
    ledger_id: Mapped[int | None] = mapped_column(ID, default=None)
    outcome: Mapped[str | None] = mapped_column(String(255), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # Dry run: the provider calls this recipient would need.
    calls: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class CampaignImportError(Base):
    """A source row that was not imported, with its line number and why."""

    __tablename__ = "campaign_import_errors"
    __table_args__ = (Index("ix_campaign_import_errors_campaign", "campaign_id", "line"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ID, ForeignKey("campaigns.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
