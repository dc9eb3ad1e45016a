"""Filters, keyset paging and the retention purge over the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.audit.helpers import audit_rows, entry, seed
from worker.audit import (
    MAX_PAGE,
    AuditFilter,
    list_entries,
    purge_expired,
    retention_cutoff,
)
from worker.db import Database

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def ids(db: Database, filters: AuditFilter, **kwargs: int | None) -> list[int]:
    with db.sessions() as session:
        return [row.id for row in list_entries(session, filters, **kwargs)]  # type: ignore[arg-type]


def mixed(db: Database) -> None:
    """Rows 1..5 with one distinguishing value each."""
    seed(
        db,
        [
            entry(
                at=T0,
                action="list_templates",
                pass_ref=None,
                actor_kind="system",
                actor_id="passsync",
            ),
            entry(at=T0 + timedelta(minutes=1), action="create_pass", actor_id="7"),
            entry(at=T0 + timedelta(minutes=2), outcome="server_error", status=503),
            entry(at=T0 + timedelta(minutes=3), actor_kind="admin", actor_id="ops"),
            entry(at=T0 + timedelta(minutes=4), pass_ref="pass-2"),
        ],
    )


def test_each_filter_selects_exactly_its_rows_newest_first(db: Database) -> None:
    mixed(db)
    assert ids(db, AuditFilter()) == [5, 4, 3, 2, 1]
    assert ids(db, AuditFilter(action="create_pass")) == [2]
    assert ids(db, AuditFilter(outcome="server_error")) == [3]
    assert ids(db, AuditFilter(actor_kind="admin")) == [4]
    assert ids(db, AuditFilter(actor_kind="event", actor_id="7")) == [2]
    assert ids(db, AuditFilter(actor_id="1")) == [5, 3]
    assert ids(db, AuditFilter(pass_ref="pass-2")) == [5]
    assert ids(db, AuditFilter(since=T0 + timedelta(minutes=3))) == [5, 4]
    assert ids(db, AuditFilter(until=T0 + timedelta(minutes=1))) == [1]
    assert ids(db, AuditFilter(action="create_pass", outcome="server_error")) == []


def test_keyset_pages_cover_every_row_once(db: Database) -> None:
    mixed(db)
    first = ids(db, AuditFilter(), limit=2)
    second = ids(db, AuditFilter(), limit=2, before_id=first[-1])
    third = ids(db, AuditFilter(), limit=2, before_id=second[-1])
    assert (first, second, third) == ([5, 4], [3, 2], [1])


def test_the_page_size_is_capped(db: Database) -> None:
    seed(db, [entry() for _ in range(MAX_PAGE + 3)])
    assert len(ids(db, AuditFilter(), limit=10_000)) == MAX_PAGE


def test_purge_deletes_only_rows_older_than_the_cutoff_in_batches(db: Database) -> None:
    # Given 5 expired rows and 2 fresh ones
    now = datetime(2026, 11, 30, tzinfo=UTC)
    old = [entry(at=now - timedelta(days=91, minutes=i)) for i in range(5)]
    fresh = [entry(at=now - timedelta(days=89)), entry(at=now, action="get_pass")]
    seed(db, old + fresh)
    cutoff = retention_cutoff(90, now)
    assert cutoff == now - timedelta(days=90)
    # When the purge runs in batches of 2
    deleted = purge_expired(db, before=cutoff, batch_size=2)
    # Then the 5 expired rows are gone and the fresh ones untouched; a rerun deletes nothing
    assert deleted == 5
    assert [(r.id, r.action) for r in audit_rows(db)] == [(6, "update_pass"), (7, "get_pass")]
    assert purge_expired(db, before=cutoff, batch_size=2) == 0


def test_zero_retention_keeps_rows_forever() -> None:
    assert retention_cutoff(0) is None
