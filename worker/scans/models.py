"""The scan ledger (unique per source and scan id) and per-pass usage counters."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from worker.db import Base, JSONType, UTCDateTime, utcnow

ID = BigInteger().with_variant(Integer(), "sqlite")


class ScanStatus(StrEnum):
    PENDING = "pending"  # recorded, waiting for a worker
    APPLYING = "applying"  # effect decided and stored; provider calls may be in flight
    ACCEPTED = "accepted"  # a valid use, its effect applied
    REJECTED = "rejected"  # e.g. a second scan of a redeemed coupon: nothing changed
    UNKNOWN = "unknown"  # no pass we know matches the scan
    REFUSED = "refused"  # the provider refused the effect: counters and coupon taken back
    FAILED = "failed"  # before `refused`: the provider refused the effect (counters kept)


class Scan(Base):
    __tablename__ = "scans"
    __table_args__ = (
        UniqueConstraint("source", "scan_id", name="uq_scans_source_scan_id"),
        Index("ix_scans_status", "status", "id"),
        Index("ix_scans_mapping_id", "mapping_id"),
        Index("ix_scans_status_received_at", "status", "received_at"),  # retention
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    scan_id: Mapped[str] = mapped_column(String(255))
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    barcode: Mapped[str | None] = mapped_column(String(255), default=None)
    provider_pass_id: Mapped[str | None] = mapped_column(String(255), default=None)
    customer_id: Mapped[str | None] = mapped_column(String(255), default=None)
    pass_key: Mapped[str | None] = mapped_column(String(64), default=None)
    location: Mapped[str | None] = mapped_column(String(255), default=None)
    amount: Mapped[float | None] = mapped_column(Float, default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=ScanStatus.PENDING)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    mapping_id: Mapped[int | None] = mapped_column(ID, default=None)
    # The effect decided in the claim step (fields to set, void): a retry repeats it as is.
    effect: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class PassUsage(Base):
    """What scans did to one pass: counters that usage rules write to the provider."""

    __tablename__ = "pass_usage"

    mapping_id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=False)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    visits: Mapped[int] = mapped_column(Integer, default=0)
    points: Mapped[float] = mapped_column(Float, default=0.0)
    redeemed_scan_id: Mapped[int | None] = mapped_column(ID, default=None)
    first_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
