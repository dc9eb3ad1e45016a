"""The retention purge deletes exactly the finished rows past their windows, in bounded
batches, on SQLite and Postgres; a crash mid-purge leaves every table consistent."""

from __future__ import annotations

import itertools
import math
import random
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
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
from worker.retention.purge import pause_after, retention_status, run_retention
from worker.scans.models import Scan


def ids(db: Database, model: Any) -> set[int]:
    with db.sessions() as session:
        return set(session.scalars(select(model.id)))


def count(db: Database, model: Any) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def no_sleep(_seconds: float) -> None:
    return None


def ticking(step: float) -> Callable[[], float]:
    """A clock that moves `step` seconds each time it is read."""
    reads = itertools.count()
    return lambda: next(reads) * step


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


def test_batches_are_bounded_and_paused_between(db: Database) -> None:
    gone = {seed.inbound(db, status="handled", received=OLD, handled=OLD) for _ in range(7)}
    kept = {seed.inbound(db, status="pending", received=OLD) for _ in range(2)}
    pauses: list[float] = []
    left: list[int] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        left.append(count(db, InboundEvent))

    # Batches that take 10 ms each: the proportional pause (30 ms at a 25 % duty cycle) is
    # below the floor, so the floor is what the purge waits.
    settings = RetentionSettings(batch_size=3, pause_seconds=0.25, duty_cycle=0.25)

    report = run_retention(
        db, settings, tables=["inbound"], now=NOW, sleep=pause, clock=ticking(0.01)
    )

    assert ids(db, InboundEvent) == kept
    assert not gone & ids(db, InboundEvent)
    assert left == [2 + 4, 2 + 1]  # 3 rows per batch, then the last one
    assert report.tables[0].batches == math.ceil(7 / 3)
    assert pauses == [0.25, 0.25]  # after each full batch, none after the last


def test_the_pause_follows_the_cost_of_each_batch(db: Database) -> None:
    for _ in range(7):
        seed.inbound(db, status="handled", received=OLD, handled=OLD)
    pauses: list[float] = []
    # Each batch takes 0.1 s on this clock; at a 20 % duty cycle the purge rests 4 times that.
    settings = RetentionSettings(batch_size=3, pause_seconds=0.01, duty_cycle=0.2)

    run_retention(
        db, settings, tables=["inbound"], now=NOW, sleep=pauses.append, clock=ticking(0.1)
    )

    assert pauses == pytest.approx([0.4, 0.4])
    assert count(db, InboundEvent) == 0


@pytest.mark.parametrize(
    ("took", "duty", "floor", "pause"),
    [
        (0.040, 0.25, 0.0, 0.120),  # busy a quarter of the time
        (0.040, 0.5, 0.0, 0.040),
        (0.200, 0.1, 0.05, 1.800),
        (0.001, 0.25, 0.05, 0.050),  # a cheap batch still waits the floor
        (0.300, 1.0, 0.05, 0.050),  # duty 1: only the floor
    ],
)
def test_pause_after_keeps_the_duty_cycle(
    took: float, duty: float, floor: float, pause: float
) -> None:
    settings = RetentionSettings(duty_cycle=duty, pause_seconds=floor)
    assert pause_after(took, settings) == pytest.approx(pause)


def test_a_duty_cycle_outside_0_to_1_is_refused() -> None:
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValidationError, match="duty_cycle"):
            RetentionSettings(duty_cycle=bad)


def test_rows_of_the_same_instant_are_walked_in_bounded_batches(db: Database) -> None:
    # Given eleven finished rows received at one instant, three of them not eligible
    # (handled within the window) spread among them
    gone, kept = set(), set()
    for i in range(11):
        recent = i in (1, 5, 9)
        row = seed.inbound(db, status="handled", received=OLD, handled=RECENT if recent else OLD)
        (kept if recent else gone).add(row)
    left: list[int] = []

    # When the purge walks them two by two
    report = run_retention(
        db,
        RetentionSettings(batch_size=2),
        tables=["inbound"],
        now=NOW,
        sleep=lambda _s: left.append(count(db, InboundEvent)),
        clock=ticking(0.001),
    )

    # Then every batch deleted at most two, none of the instant's rows was passed over, and
    # the ineligible ones stay
    assert ids(db, InboundEvent) == kept
    steps = [before - after for before, after in itertools.pairwise([11, *left, len(kept)])]
    assert steps == [2, 2, 2, 2, 0]  # the last full batch cannot know it was the last
    assert (report.tables[0].purged, report.tables[0].batches, report.done) == (8, 4, True)


@pytest.mark.parametrize("rng_seed", [1, 2, 3])
def test_nothing_within_the_window_or_unfinished_is_ever_deleted(
    db: Database, rng_seed: int
) -> None:
    # Given rows of every status, received and handled at random around the cutoff (some
    # exactly at it, many sharing an instant), and a random batch size
    rng = random.Random(rng_seed)
    cutoff = NOW - timedelta(days=30)
    instants = [cutoff + timedelta(seconds=s) for s in (-86400, -60, -1, 0, 1, 60)]
    expected_kept, expected_gone = set(), set()
    for _ in range(60):
        status = rng.choice(["handled", "ignored", "pending", "failed", "dead"])
        received = rng.choice(instants)
        handled = rng.choice([None, *instants])
        row = seed.inbound(db, status=status, received=received, handled=handled)
        finished = status in ("handled", "ignored")
        old = received < cutoff and (handled is None or handled < cutoff)
        (expected_gone if finished and old else expected_kept).add(row)
    batch = rng.randint(1, 7)

    # When the purge runs
    report = run_retention(
        db,
        RetentionSettings(batch_size=batch, pause_seconds=0),
        tables=["inbound"],
        now=NOW,
        sleep=no_sleep,
        clock=ticking(0.001),
    )

    # Then exactly the finished rows past the window are gone
    assert ids(db, InboundEvent) == expected_kept
    assert report.tables[0].purged == len(expected_gone)


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
    # The clock ticks once per read: the deadline is 0 + 5; batches start at 1 and 3 (and end
    # at 2 and 4), the third would start at 5.
    settings = RetentionSettings(batch_size=2, max_seconds=5)

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


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    db = Database(pg_url)
    _truncate_inbound(db)
    yield db
    _truncate_inbound(db)
    db.dispose()


def _truncate_inbound(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("TRUNCATE inbound_events RESTART IDENTITY CASCADE"))


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_postgres_each_batch_reads_one_index_range_not_the_table(pg_db: Database) -> None:
    # Given 20,000 old handled events (the planner's statistics up to date)
    with pg_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO inbound_events (source, event_id, type, customer_id, occurred_at,"
                " payload, status, attempts, received_at, updated_at, handled_at, sweeps)"
                " SELECT 'crm', 'old-' || g, 'customer.updated', 'c1', t, '{}', 'handled', 1,"
                " t, t, t, 0 FROM generate_series(1, 20000) AS g,"
                " LATERAL (SELECT CAST(:old AS timestamptz) + g * interval '1 ms' AS t) AS at"
            ),
            {"old": OLD},
        )
    with pg_db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE inbound_events"))
    plans: list[Any] = []

    def explain(conn: Any, _cursor: Any, statement: str, parameters: Any, *_a: Any) -> None:
        # The tenth batch's plan, on its connection, just before it runs (half the rows
        # already deleted, their dead index entries not yet vacuumed)
        if statement.lstrip().upper().startswith("DELETE FROM INBOUND_EVENTS"):
            plans.append(None)
            if len(plans) == 10:
                with conn.connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                    plans[-1] = cursor.fetchone()[0]

    # When the purge runs in batches of 1,000
    event.listen(pg_db.engine, "before_cursor_execute", explain)
    try:
        settings = RetentionSettings(batch_size=1000, pause_seconds=0)
        report = run_retention(pg_db, settings, tables=["inbound"], now=NOW, sleep=no_sleep)
    finally:
        event.remove(pg_db.engine, "before_cursor_execute", explain)
    assert report.tables[0].purged == 20000

    # Then a later batch (it starts after the rows the first ones deleted) is planned as one
    # index range scan of the status/received_at index, and nothing scans the table
    plan = plans[9]
    nodes = list(_plan_nodes(plan[0]["Plan"]))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes
    ranges = [n for n in nodes if n.get("Index Name") == "ix_inbound_events_status_received_at"]
    assert len(ranges) == 1
    assert ranges[0]["Node Type"] == "Index Scan"
    assert "received_at >=" in ranges[0]["Index Cond"]  # starts where the last batch stopped


def test_postgres_a_batch_gives_up_on_a_lock_instead_of_queueing(pg_db: Database) -> None:
    # Given old rows, and a migration holding the table's exclusive lock for 3 s
    rows = {seed.inbound(pg_db, status="handled", received=OLD, handled=OLD) for _ in range(3)}
    with pg_db.engine.connect() as other:
        trans = other.begin()
        other.execute(text("LOCK TABLE inbound_events IN ACCESS EXCLUSIVE MODE"))
        release = threading.Timer(3.0, trans.rollback)
        release.start()
        try:
            # When the purge runs meanwhile
            report = run_retention(
                pg_db, RetentionSettings(), tables=["inbound"], now=NOW, sleep=no_sleep
            )
            released_first = not release.is_alive()
        finally:
            release.join()
    # Then its batch gave up (rolled back) instead of waiting for the lock, and says rows are
    # left for the next run, which purges them
    assert not released_first
    assert (report.tables[0].purged, report.done) == (0, False)
    assert ids(pg_db, InboundEvent) == rows
    again = run_retention(pg_db, RetentionSettings(), tables=["inbound"], now=NOW, sleep=no_sleep)
    assert (again.tables[0].purged, again.done) == (3, True)
