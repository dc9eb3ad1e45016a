"""The adoption ledger (provider callbacks), per-pass adoption state, reconciliation rows."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from worker.db import Base, JSONType, UTCDateTime, utcnow

# The per-pass adoption state lives beside the mapping (scans read its barcodes too).
from worker.sync.models import PassAdoption

__all__ = ["AdoptionEvent", "Drift", "Kind", "PassAdoption", "ReconcileCursor"]

ID = BigInteger().with_variant(Integer(), "sqlite")


class Kind(StrEnum):
    CREATED = "created"
    INSTALLED = "installed"
    REMOVED = "removed"
    VOIDED = "voided"
    SCANNED = "scanned"


class AdoptionEvent(Base):
    """One provider callback, unique per (provider, callback id)."""

    __tablename__ = "adoption_events"
    __table_args__ = (
        UniqueConstraint("provider", "callback_id", name="uq_adoption_events_provider_callback"),
        Index("ix_adoption_events_pass", "provider_pass_id", "id"),
        Index("ix_adoption_events_received_at", "received_at"),  # retention
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    callback_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    provider_pass_id: Mapped[str | None] = mapped_column(String(255), default=None)
    platform: Mapped[str | None] = mapped_column(String(32), default=None)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReconcileCursor(Base):
    """Where the incremental reconciliation stopped (one row per provider)."""

    __tablename__ = "reconcile_cursors"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text, default=None)
    # The sweep in progress: a pass read in it carries this number in pass_adoption.
    sweep: Mapped[int] = mapped_column(Integer, default=1)
    # Mappings newer than the sweep's start may not be in pages read before them.
    sweep_started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Drift(Base):
    """One difference found between the provider and the pass mappings."""

    __tablename__ = "reconcile_drift"
    __table_args__ = (Index("ix_reconcile_drift_found", "found_at"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    provider_pass_id: Mapped[str | None] = mapped_column(String(255), default=None)
    mapping_id: Mapped[int | None] = mapped_column(ID, default=None)
    action: Mapped[str] = mapped_column(String(32))
    found_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
