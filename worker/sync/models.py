"""The pass mapping: (provider, customer, pass key) -> the provider's pass and what we applied."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from worker.db import Base, UTCDateTime, utcnow


class PassStatus(StrEnum):
    NEW = "new"  # row claimed, nothing created at the provider yet
    ACTIVE = "active"
    VOIDED = "voided"
    DELETED = "deleted"


class PassMapping(Base):
    __tablename__ = "pass_mappings"
    __table_args__ = (
        UniqueConstraint(
            "provider", "customer_id", "pass_key", name="uq_pass_mappings_provider_customer_key"
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    # The account's name (a key of `providers:`); the column predates named accounts.
    provider: Mapped[str] = mapped_column(String(32))
    # The account's platform kind when the mapping was made (outbound events say it).
    kind: Mapped[str | None] = mapped_column(String(32), default=None)
    customer_id: Mapped[str] = mapped_column(String(255))
    pass_key: Mapped[str] = mapped_column(String(64))
    user_provided_id: Mapped[str] = mapped_column(String(255))
    provider_pass_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    template_id: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str] = mapped_column(String(16), default=PassStatus.NEW)
    content_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_event_id: Mapped[str | None] = mapped_column(String(255), default=None)
    download_page: Mapped[str | None] = mapped_column(Text, default=None)
    iphone_uri: Mapped[str | None] = mapped_column(Text, default=None)
    android_uri: Mapped[str | None] = mapped_column(Text, default=None)
    # The claim: one attempt at a time works on a pass, across workers, without holding a
    # database lock during provider calls. It expires, so a crashed worker frees the pass.
    claim_token: Mapped[str | None] = mapped_column(String(36), default=None)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Set before provider calls, cleared once their result is recorded: while set, the
    # provider may be ahead of content_hash/status, so nothing is skipped as unchanged.
    unconfirmed_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class PassAdoption(Base):
    """Where one provider pass stands in the funnel (kept by callbacks, scans, reconcile)."""

    __tablename__ = "pass_adoption"
    __table_args__ = (Index("ix_pass_adoption_barcode", "barcode"),)

    provider_pass_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    barcode: Mapped[str | None] = mapped_column(String(255), default=None)
    template: Mapped[str | None] = mapped_column(String(255), default=None)
    platform: Mapped[str | None] = mapped_column(String(32), default=None)
    active_devices: Mapped[int] = mapped_column(Integer, default=0)
    installs: Mapped[int] = mapped_column(Integer, default=0)
    removals: Mapped[int] = mapped_column(Integer, default=0)
    first_installed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # A scan the provider reported (its own scanner app); our POS scans are in pass_usage.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    seen_sweep: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
