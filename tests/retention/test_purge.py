"""The retention purge deletes exactly the finished rows past their windows, in bounded
batches, on SQLite and Postgres; a crash mid-purge leaves every table consistent."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import event, func, select, text

from tests.retention import seed
from tests.retention.seed import NOW, OLD, RECENT
from worker.adoption.models import AdoptionEvent
from worker.config import RetentionSettings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.observability import metrics
from worker.outbox.models import OutboxAttempt, OutboxDelivery, OutboxEvent
from worker.retention.purge import retention_status, run_retention
from worker.scans.models import Scan


def ids(db: Database, model: Any) -> set[int]:
    with db.sessions() as session:
        return set(session.scalars(select(model.id)))


def count(db: Database, model: Any) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
def deletes(db: Database) -> Iterator[list[tuple[str, int]]]:
    """(table, rows deleted) of every DELETE statement the purge sends."""
    seen: list[tuple[str, int]] = []

    def after(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM"):
            seen.append((statement.split()[2], cursor.rowcount))

    event.listen(db.engine, "after_cursor_execute", after)
    yield seen
    event.remove(db.engine, "after_cursor_execute", after)


def test_only_finished_rows_past_their_windows_are_purged(db: Database) -> None:
    seeded = seed.everything(db)

    report = run_retention(db, RetentionSettings(), now=NOW, sleep=no_sleep)

    assert ids(db, InboundEvent) == seeded.inbound_kept
    assert ids(db, OutboxEvent) == seeded.outbox_kept
    assert ids(db, AdoptionEvent) == seeded.adoption_kept
    assert ids(db, Scan) == seeded.scans_kept
    purged = {t.table: t.purged for t in report.tables}
    assert purged == {
        "inbound": len(seeded.inbound_gone),
        "outbox": len(seeded.outbox_gone),
        "adoption": len(seeded.adoption_gone),
        "scans": len(seeded.scans_gone),
    }
    assert report.done
    # The purged outbox events took their deliveries and attempt logs with them; the kept
    # ones still have all of theirs (one attempt per delivery).
    with db.sessions() as session:
        orphans = session.scalar(
            select(func.count())
            .select_from(OutboxDelivery)
            .where(OutboxDelivery.outbox_event_id.not_in(seeded.outbox_kept))
        )
    assert orphans == 0
    assert count(db, OutboxAttempt) == count(db, OutboxDelivery) == 6


def test_batches_are_bounded_and_paused_between(
    db: Database, deletes: list[tuple[str, int]]
) -> None:
    gone = {seed.inbound(db, status="handled", received=OLD, handled=OLD) for _ in range(7)}
    kept = {seed.inbound(db, status="pending", received=OLD) for _ in range(2)}
    pauses: list[float] = []
    settings = RetentionSettings(batch_size=3, pause_seconds=0.25)

    report = run_retention(db, settings, tables=["inbound"], now=NOW, sleep=pauses.append)

    assert ids(db, InboundEvent) == kept
    assert not gone & ids(db, InboundEvent)
    assert [n for table, n in deletes if table == "inbound_events"] == [3, 3, 1]
    assert report.tables[0].batches == math.ceil(7 / 3)
    assert pauses == [0.25, 0.25]  # after each full batch, none after the last


def test_a_crash_mid_purge_rolls_back_only_the_batch_in_flight(db: Database) -> None:
    # Four old, fully delivered outbox events with two deliveries each; one pending one.
    delivered = [("delivered", OLD), ("delivered", OLD)]
    old = [seed.outbox(db, fanned=OLD, deliveries=delivered) for _ in range(4)]
    pending = seed.outbox(db, fanned=OLD, deliveries=[("pending", None)])
    settings = RetentionSettings(batch_size=2, pause_seconds=0)
    statements: list[str] = []

    def crash_on_second_event_delete(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM OUTBOX_EVENTS"):
            statements.append(statement)
            if len(statements) == 2:  # the second batch: its deliveries are already deleted
                raise RuntimeError("database connection lost")

    event.listen(db.engine, "before_cursor_execute", crash_on_second_event_delete)
    try:
        with pytest.raises(RuntimeError, match="connection lost"):
            run_retention(db, settings, tables=["outbox"], now=NOW, sleep=no_sleep)
    finally:
        event.remove(db.engine, "before_cursor_execute", crash_on_second_event_delete)

    left = ids(db, OutboxEvent)
    assert len(left & set(old)) == 2 and pending in left  # batch 1 committed, batch 2 not
    with db.sessions() as session:
        per_event = dict(
            session.execute(
                select(OutboxDelivery.outbox_event_id, func.count()).group_by(
                    OutboxDelivery.outbox_event_id
                )
            ).all()
        )
    assert per_event == {**dict.fromkeys(left & set(old), 2), pending: 1}  # none half-deleted
    assert count(db, OutboxAttempt) == 5

    report = run_retention(db, settings, tables=["outbox"], now=NOW, sleep=no_sleep)

    assert ids(db, OutboxEvent) == {pending}
    assert report.tables[0].purged == 2 and report.done


def test_a_run_stops_when_its_time_is_up_and_the_next_one_goes_on(db: Database) -> None:
    for _ in range(5):
        seed.inbound(db, status="handled", received=OLD, handled=OLD)
    ticks = iter(range(100))
    # The clock ticks once per read: the deadline is 0 + 3, and batches start at 1 and 2.
    settings = RetentionSettings(batch_size=2, max_seconds=3)

    first = run_retention(
        db, settings, tables=["inbound"], now=NOW, sleep=no_sleep, clock=lambda: next(ticks)
    )

    assert (first.tables[0].purged, first.done, count(db, InboundEvent)) == (4, False, 1)
    second = run_retention(db, settings, tables=["inbound"], now=NOW, sleep=no_sleep)
    assert (second.tables[0].purged, second.done, count(db, InboundEvent)) == (1, True, 0)


def test_a_window_of_zero_keeps_the_table_forever(db: Database) -> None:
    seeded = seed.everything(db)
    settings = RetentionSettings(inbound_days=0, outbox_days=0, adoption_days=0, scans_days=0)

    report = run_retention(db, settings, now=NOW, sleep=no_sleep)

    assert report.purged == 0
    assert ids(db, InboundEvent) == seeded.inbound_gone | seeded.inbound_kept
    assert [t.cutoff for t in report.tables] == [None, None, None, None]


def test_status_counts_what_a_purge_would_delete(db: Database) -> None:
    seeded = seed.everything(db)

    with db.sessions() as session:
        found = {
            row["table"]: row for row in retention_status(session, RetentionSettings(), now=NOW)
        }

    assert found["inbound"]["purgeable"] == len(seeded.inbound_gone)
    assert found["inbound"]["rows"] == len(seeded.inbound_gone | seeded.inbound_kept)
    assert found["outbox"]["purgeable"] == len(seeded.outbox_gone)
    assert found["adoption"]["purgeable"] == len(seeded.adoption_gone)
    assert found["scans"]["purgeable"] == len(seeded.scans_gone)
    assert ids(db, InboundEvent) == seeded.inbound_gone | seeded.inbound_kept  # nothing deleted


def test_purged_rows_are_counted_per_table(db: Database) -> None:
    seed.inbound(db, status="handled", received=OLD, handled=OLD)
    seed.adoption(db, received=OLD - (NOW - OLD) * 3)
    before = {t: _metric(t) for t in ("inbound", "adoption", "scans")}

    run_retention(db, RetentionSettings(), now=NOW, sleep=no_sleep)

    after = {t: _metric(t) for t in ("inbound", "adoption", "scans")}
    assert {t: after[t] - before[t] for t in after} == {"inbound": 1, "adoption": 1, "scans": 0}


def _metric(table: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "passsync_retention_purged_rows_total", {"table": table}
    )
    return value or 0.0


def test_unknown_tables_are_refused_before_anything_is_deleted(db: Database) -> None:
    seeded = seed.everything(db)
    with pytest.raises(ValueError, match="unknown retention table"):
        run_retention(db, RetentionSettings(), tables=["inbound", "ledger"], now=NOW)
    assert ids(db, InboundEvent) == seeded.inbound_gone | seeded.inbound_kept


@pytest.mark.parametrize("field", ["inbound_days", "adoption_days", "scans_days"])
def test_a_dedup_window_shorter_than_the_senders_retries_is_refused(field: str) -> None:
    with pytest.raises(ValidationError, match="at least 3 days"):
        RetentionSettings(**{field: 1})
    assert getattr(RetentionSettings(**{field: 0}), field) == 0
    assert RetentionSettings(outbox_days=1).outbox_days == 1


def test_postgres_skips_a_row_another_transaction_holds(pg_url: str) -> None:
    db = Database(pg_url)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("TRUNCATE inbound_events RESTART IDENTITY CASCADE"))
        held = seed.inbound(db, status="handled", received=OLD, handled=OLD)
        free = seed.inbound(db, status="handled", received=OLD, handled=OLD)
        with db.engine.connect() as other:
            trans = other.begin()
            other.execute(
                text("SELECT id FROM inbound_events WHERE id = :i FOR UPDATE"), {"i": held}
            )
            settings = RetentionSettings(batch_size=10)
            report = run_retention(db, settings, tables=["inbound"], now=NOW, sleep=no_sleep)
            trans.rollback()
        assert report.tables[0].purged == 1
        assert ids(db, InboundEvent) == {held}
        assert free not in ids(db, InboundEvent)
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("TRUNCATE inbound_events RESTART IDENTITY CASCADE"))
        db.dispose()


def test_recent_rows_stay_whatever_their_state(db: Database) -> None:
    kept = {
        seed.inbound(db, status="handled", received=RECENT, handled=RECENT),
        seed.inbound(db, status="pending", received=RECENT),
    }
    run_retention(db, RetentionSettings(), now=NOW, sleep=no_sleep)
    assert ids(db, InboundEvent) == kept
