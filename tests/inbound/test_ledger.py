"""The inbound ledger on both backends: one row per (source, event id), never a commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from worker.db import Database
from worker.inbound import ledger
from worker.inbound.ledger import (
    RecordResult,
    get_event,
    list_events,
    mark_for_replay,
    record_events,
)
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.inbound.status import stale_pending_ids


def make_event(event_id: str, **overrides: Any) -> CanonicalEvent:
    raw: dict[str, Any] = {
        "id": event_id,
        "type": "customer.created",
        "occurred_at": "2026-11-20T11:00:00+01:00",
        "customer": {"id": f"cus_{event_id}", "attributes": {"tier": "gold"}},
        "data": {"n": 1.5, "tags": ["a", "b"]},
    }
    raw.update(overrides)
    return CanonicalEvent.model_validate(raw)


def count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(InboundEvent)) or 0


def record(db: Database, source: str, *events: CanonicalEvent) -> RecordResult:
    with db.session() as session:
        return record_events(session, source, list(events))


def test_new_events_are_recorded_pending_with_their_json(db: Database) -> None:
    # When two new events are recorded
    result = record(db, "crm", make_event("e1"), make_event("e2"))
    # Then both get ids, ascending, and rows hold the canonical JSON
    assert result.duplicates == 0
    assert len(result.accepted_ids) == 2
    assert result.accepted_ids == sorted(result.accepted_ids)
    with db.session() as session:
        row = get_event(session, result.accepted_ids[0])
    assert row is not None
    assert (row.source, row.event_id, row.type, row.customer_id) == (
        "crm",
        "e1",
        "customer.created",
        "cus_e1",
    )
    assert (row.status, row.attempts, row.last_error, row.handled_at) == (
        EventStatus.PENDING,
        0,
        None,
        None,
    )
    assert row.occurred_at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert row.received_at.tzinfo is not None
    assert row.payload == {
        "id": "e1",
        "type": "customer.created",
        "occurred_at": "2026-11-20T11:00:00+01:00",
        "customer": {
            "id": "cus_e1",
            "email": None,
            "first_name": None,
            "last_name": None,
            "attributes": {"tier": "gold"},
        },
        "data": {"n": 1.5, "tags": ["a", "b"]},
    }


def test_known_events_are_duplicates_and_keep_the_first_payload(db: Database) -> None:
    [first] = record(db, "crm", make_event("e1")).accepted_ids
    # When e1 arrives again (changed) together with a new e2
    again = record(db, "crm", make_event("e1", type="customer.deleted"), make_event("e2"))
    # Then only e2 is new and e1 is untouched
    assert again.duplicates == 1
    assert len(again.accepted_ids) == 1
    assert again.accepted_ids[0] != first
    with db.session() as session:
        row = get_event(session, first)
        assert row is not None
        assert row.type == "customer.created"
    assert count(db) == 2


def test_repeats_inside_one_call_are_duplicates(db: Database) -> None:
    result = record(
        db, "crm", make_event("e1"), make_event("e1"), make_event("e2"), make_event("e1")
    )
    assert (len(result.accepted_ids), result.duplicates) == (2, 2)
    assert count(db) == 2


def test_sources_have_separate_id_spaces(db: Database) -> None:
    assert record(db, "crm", make_event("e1")).duplicates == 0
    assert record(db, "pos", make_event("e1")).duplicates == 0
    assert count(db) == 2


def test_empty_list_records_nothing(db: Database) -> None:
    assert record(db, "crm") == RecordResult(accepted_ids=[], duplicates=0)
    assert count(db) == 0


def test_record_events_does_not_commit(db: Database) -> None:
    # Given a session that is rolled back after recording
    session = db.sessions()
    try:
        result = record_events(session, "crm", [make_event("e1")])
        assert len(result.accepted_ids) == 1
        session.rollback()
    finally:
        session.close()
    # Then nothing was stored
    assert count(db) == 0


def test_large_batches_are_inserted_in_chunks(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given tiny chunks, and a batch with one already known event
    monkeypatch.setattr(ledger, "INSERT_CHUNK_ROWS", 2)
    record(db, "crm", make_event("e3"))
    # When seven events are recorded
    result = record(db, "crm", *(make_event(f"e{n}") for n in range(7)))
    # Then every chunk counted
    assert (len(result.accepted_ids), result.duplicates) == (6, 1)
    assert count(db) == 7


def set_row(db: Database, pk: int, **values: Any) -> None:
    with db.session() as session:
        session.execute(update(InboundEvent).where(InboundEvent.id == pk).values(**values))


def test_stale_pending_ids_finds_stale_pending_events(db: Database) -> None:
    # Given a stale pending event, a fresh one, and a stale handled one
    ids = record(db, "crm", make_event("e1"), make_event("e2"), make_event("e3")).accepted_ids
    old = datetime.now(UTC) - timedelta(minutes=10)
    set_row(db, ids[0], updated_at=old)
    set_row(db, ids[2], updated_at=old, status="handled")
    no_grace = timedelta(0)
    # Then only the stale pending one is due
    with db.session() as session:
        due = stale_pending_ids(session, fresh_after=timedelta(minutes=1), retry_grace=no_grace)
        assert due == [ids[0]]
        everything = stale_pending_ids(
            session, fresh_after=-timedelta(days=1), retry_grace=no_grace, limit=1
        )
        assert everything == [ids[0]]


def test_list_events_filters_and_pages(db: Database) -> None:
    ids = record(db, "crm", make_event("e1"), make_event("e2"), make_event("e3")).accepted_ids
    set_row(db, ids[1], status="failed")
    with db.session() as session:
        assert [e.id for e in list_events(session)] == list(reversed(ids))
        assert [e.id for e in list_events(session, status=EventStatus.FAILED)] == [ids[1]]
        assert [e.id for e in list_events(session, limit=1, offset=1)] == [ids[1]]
        later = datetime.now(UTC) + timedelta(minutes=1)
        assert list_events(session, since=later) == []
        earlier = datetime.now(UTC) - timedelta(minutes=1)
        assert len(list_events(session, since=earlier)) == 3


def test_get_event_of_unknown_id_is_none(db: Database) -> None:
    with db.session() as session:
        assert get_event(session, 12345) is None


def test_mark_for_replay_resets_status_and_attempts(db: Database) -> None:
    [pk] = record(db, "crm", make_event("e1")).accepted_ids
    done = datetime(2026, 11, 20, tzinfo=UTC)
    set_row(db, pk, status="failed", attempts=8, last_error="boom", handled_at=done)
    with db.session() as session:
        assert mark_for_replay(session, pk) is True
        assert mark_for_replay(session, pk + 1000) is False
    with db.session() as session:
        row = get_event(session, pk)
        assert row is not None
        assert (row.status, row.attempts, row.handled_at, row.last_error) == (
            "pending",
            0,
            None,
            "boom",
        )
