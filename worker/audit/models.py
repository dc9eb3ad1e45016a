"""The audit log: one row per HTTP attempt at a provider, never a header or a secret."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from worker.db import Base, UTCDateTime, utcnow

# Column sizes, also used to clip values before they are written (Postgres enforces them).
ACTION_LEN = 32
METHOD_LEN = 8
PATH_LEN = 255
PASS_REF_LEN = 255
OUTCOME_LEN = 32
ACTOR_KIND_LEN = 16
ACTOR_ID_LEN = 255
PROVIDER_LEN = 32


class AuditEntry(Base):
    __tablename__ = "audit_log"
    # One index per filter the API offers, each ending in the paging key (id) so a filtered,
    # newest-first page is an index range scan.
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_action_id", "action", "id"),
        Index("ix_audit_log_outcome_id", "outcome", "id"),
        Index("ix_audit_log_actor_id", "actor_kind", "actor_id", "id"),
        Index("ix_audit_log_pass_ref_id", "pass_ref", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    # When the attempt finished (the hook fires after the answer or the error).
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    provider: Mapped[str] = mapped_column(String(PROVIDER_LEN))
    action: Mapped[str] = mapped_column(String(ACTION_LEN))
    method: Mapped[str] = mapped_column(String(METHOD_LEN))
    path: Mapped[str] = mapped_column(String(PATH_LEN))  # the template, never the real URL
    pass_ref: Mapped[str | None] = mapped_column(String(PASS_REF_LEN), default=None)
    status: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_ms: Mapped[float] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(OUTCOME_LEN))
    actor_kind: Mapped[str] = mapped_column(String(ACTOR_KIND_LEN))
    actor_id: Mapped[str] = mapped_column(String(ACTOR_ID_LEN))
