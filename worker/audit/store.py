"""Audit writes in short transactions of their own, independent of any caller's transaction.

This is the only module of worker/audit that commits: an audit row must survive the
rollback of the event that caused the call, so it can never join the event's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from worker.audit.models import AuditEntry
from worker.audit.queries import delete_expired
from worker.db import Database, utcnow

PURGE_BATCH = 5_000


def write_entries(db: Database, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (AuditEntry column values) in one transaction; raises on failure."""
    if not rows:
        return
    with db.engine.begin() as conn:
        conn.execute(insert(AuditEntry), list(rows))


def retention_cutoff(retention_days: int, now: datetime | None = None) -> datetime | None:
    """The time before which rows are expired; None when retention is 0 (keep forever)."""
    if retention_days <= 0:
        return None
    return (now or utcnow()) - timedelta(days=retention_days)


def purge_expired(db: Database, *, before: datetime, batch_size: int = PURGE_BATCH) -> int:
    """Delete every row older than `before`, one short transaction per batch (so SQLite's
    write lock is never held for long); returns the number deleted."""
    total = 0
    while True:
        with db.session() as session:
            deleted = delete_expired(session, before=before, limit=batch_size)
        total += deleted
        if deleted < batch_size:
            return total
