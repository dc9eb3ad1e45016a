"""The recorder: one row per attempt, attributed to the actor, surviving the event's rollback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.audit.helpers import FakeRecord, audit_rows, count_without_locking
from worker.audit import Actor, AuditRecorder, acting_as
from worker.audit import recorder as recorder_module
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.migrate import upgrade


def columns(db: Database) -> list[tuple[object, ...]]:
    return [
        (
            r.provider,
            r.action,
            r.method,
            r.path,
            r.pass_ref,
            r.status,
            r.duration_ms,
            r.attempt,
            r.outcome,
            r.actor_kind,
            r.actor_id,
        )
        for r in audit_rows(db)
    ]


def test_outside_a_batch_a_row_is_written_at_once_with_every_field(db: Database) -> None:
    # Given a recorder, When the hook fires for a CLI user's call
    recorder = AuditRecorder(db, provider="passcreator")
    with acting_as(Actor("cli", "alice")):
        recorder.on_attempt(FakeRecord(status=503, attempt=2, outcome="server_error"))
    # Then exactly that row is stored, at a UTC time
    assert columns(db) == [
        (
            "passcreator",
            "update_pass",
            "PATCH",
            "/api/v3/pass/{id}",
            "pass-1",
            503,
            12.346,
            2,
            "server_error",
            "cli",
            "alice",
        )
    ]
    assert audit_rows(db)[0].at.utcoffset() is not None


def test_a_record_without_pass_ref_and_no_actor_is_the_systems(db: Database) -> None:
    @dataclass(frozen=True)
    class Bare:
        action: str = "list_templates"
        method: str = "GET"
        path: str = "/api/pass-template"
        status: int | None = None
        duration_ms: float = 1.0
        attempt: int = 1
        outcome: str = "timeout"

    AuditRecorder(db, provider="passcreator").on_attempt(Bare())
    [row] = audit_rows(db)
    assert (row.pass_ref, row.status, row.outcome, row.actor_kind, row.actor_id) == (
        None,
        None,
        "timeout",
        "system",
        "passsync",
    )


def test_values_longer_than_their_column_are_clipped(db: Database) -> None:
    recorder = AuditRecorder(db, provider="passcreator")
    with acting_as(Actor("admin", "t" * 300)):
        recorder.on_attempt(FakeRecord(pass_ref="p" * 300, action="a" * 40))
    [row] = audit_rows(db)
    assert (row.pass_ref, row.action, row.actor_id) == ("p" * 255, "a" * 32, "t" * 255)


def test_rows_of_a_rolled_back_event_transaction_are_kept(db: Database) -> None:
    # Given the event's transaction holds its locks while the provider is called
    recorder = AuditRecorder(db, provider="passcreator")
    seen_during_transaction: list[int] = []
    with (
        pytest.raises(RuntimeError, match="event failed"),
        acting_as(Actor.event(9)),
        recorder.batch(),
        db.session() as session,
    ):
        session.add(_event_row())
        session.flush()
        recorder.on_attempt(FakeRecord(attempt=1, status=503, outcome="server_error"))
        recorder.on_attempt(FakeRecord(attempt=2, status=200, outcome="ok"))
        seen_during_transaction.append(count_without_locking(db))
        # When the event fails after the calls
        raise RuntimeError("event failed")
    # Then its ledger write is gone but both attempts are on record, for that event
    with db.sessions() as session:
        assert session.scalars(select(InboundEvent)).all() == []
    assert [(r.attempt, r.status, r.actor_id) for r in audit_rows(db)] == [
        (1, 503, "9"),
        (2, 200, "9"),
    ]
    # SQLite holds them until the transaction ends (its write lock); Postgres writes at once
    assert seen_during_transaction == [0 if db.is_sqlite else 2]


def test_on_sqlite_the_hook_never_waits_for_the_events_write_lock(tmp_path: Path) -> None:
    # Given a SQLite database whose busy timeout would stall a blocked writer
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    upgrade(url)
    db = Database(url)
    recorder = AuditRecorder(db, provider="passcreator")
    try:
        with recorder.batch(), db.session() as session:
            session.add(_event_row())
            session.flush()  # BEGIN IMMEDIATE: this connection holds the write lock
            # When the hook fires, Then it returns without touching the database
            recorder.on_attempt(FakeRecord())
            assert count_without_locking(db) == 0
        assert len(audit_rows(db)) == 1
    finally:
        db.dispose()


def test_nested_batches_write_once_when_the_outermost_ends(db: Database) -> None:
    recorder = AuditRecorder(db, provider="passcreator", buffered=True)
    with recorder.batch():
        with recorder.batch():
            recorder.on_attempt(FakeRecord(attempt=1))
        after_inner = count_without_locking(db)
        recorder.on_attempt(FakeRecord(attempt=2))
    assert (after_inner, [r.attempt for r in audit_rows(db)]) == (0, [1, 2])


def test_an_unwritable_store_loses_rows_with_a_logged_count_and_never_raises(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an audit store that cannot be opened (a directory, not a database file)
    broken = Database(f"sqlite:///{tmp_path}")
    recorder = AuditRecorder(broken, provider="passcreator")
    caplog.set_level(logging.WARNING, logger="passsync.audit")
    try:
        with recorder.batch():
            recorder.on_attempt(FakeRecord(attempt=1))
            recorder.on_attempt(FakeRecord(attempt=2))
        recorder.on_attempt(FakeRecord(attempt=3))
    finally:
        broken.dispose()
    # Then nothing raised, and the losses are counted in the log without any row content
    assert [r.getMessage() for r in caplog.records] == [
        "audit: 2 rows lost (OperationalError)",
        "audit: 1 row lost (OperationalError)",
    ]
    assert "pass-1" not in caplog.text


def test_an_immediate_write_that_fails_inside_a_batch_is_retried_at_its_end(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a recorder that writes at once, and a store that fails its first write
    recorder = AuditRecorder(db, provider="passcreator", buffered=False)
    real: Callable[..., None] = recorder_module.write_entries
    failures = [ConnectionError("database restarting")]

    def flaky(database: Database, rows: list[dict[str, object]]) -> None:
        if failures:
            raise failures.pop()
        real(database, rows)

    monkeypatch.setattr(recorder_module, "write_entries", flaky)
    # When two attempts are recorded in a batch
    with recorder.batch():
        recorder.on_attempt(FakeRecord(attempt=1))
        recorder.on_attempt(FakeRecord(attempt=2))
    # Then both rows exist once each: the second at once, the first when the batch ended
    assert [r.attempt for r in audit_rows(db)] == [2, 1]


def _event_row() -> InboundEvent:
    return InboundEvent(
        source="crm",
        event_id="e-rollback",
        type="customer.updated",
        customer_id="c1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        payload={},
    )
