"""Shared helpers for the audit tests: a fake attempt record and row access."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, func, select

from worker.audit import AuditEntry, write_entries
from worker.db import Database


@dataclass(frozen=True)
class FakeRecord:
    """The shape of the client's CallRecord, with the pass reference."""

    action: str = "update_pass"
    method: str = "PATCH"
    path: str = "/api/v3/pass/{id}"
    status: int | None = 200
    duration_ms: float = 12.3456
    attempt: int = 1
    outcome: str = "ok"
    pass_ref: str | None = "pass-1"


def audit_rows(db: Database) -> list[AuditEntry]:
    with db.sessions() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def count_without_locking(db: Database) -> int:
    """Rows visible to a plain reader (no BEGIN IMMEDIATE), usable while a writer holds SQLite."""
    engine = create_engine(db.url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(AuditEntry)) or 0)
    finally:
        engine.dispose()


def entry(**overrides: Any) -> dict[str, Any]:
    """Column values for one row, as the recorder would write them."""
    values: dict[str, Any] = {
        "at": datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        "provider": "passcreator",
        "action": "update_pass",
        "method": "PATCH",
        "path": "/api/v3/pass/{id}",
        "pass_ref": "pass-1",
        "status": 200,
        "duration_ms": 10.0,
        "attempt": 1,
        "outcome": "ok",
        "actor_kind": "event",
        "actor_id": "1",
    }
    return values | overrides


def seed(db: Database, rows: list[dict[str, Any]]) -> None:
    write_entries(db, rows)


def assert_no_secret_in_any_column(db: Database, secrets: tuple[str, ...]) -> None:
    """Every column of every row, as text, holds none of `secrets`."""
    rows = audit_rows(db)
    assert rows, "the scan needs rows to scan"
    assert all(secrets), "an empty secret would match everything"
    columns = [c.key for c in AuditEntry.__table__.columns]
    for row in rows:
        for column in columns:
            text = str(getattr(row, column))
            for secret in secrets:
                assert secret not in text, f"a secret in audit_log.{column} (row {row.id})"
