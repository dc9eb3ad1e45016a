"""Admin API: bearer tokens with read/write scopes over the inbound ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from worker.db import Database
from worker.inbound.ledger import record_events
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent

from .conftest import (
    READ_TOKEN,
    WRITE_TOKEN,
    RecordingEnqueue,
    event,
    rows,
)

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}


def seed(db: Database) -> list[int]:
    """Three events: evt_1 handled, evt_2 failed after 3 attempts, evt_3 pending."""
    events = [CanonicalEvent.model_validate(event(f"evt_{n}")) for n in (1, 2, 3)]
    with db.session() as session:
        ids = record_events(session, "crm", events).accepted_ids
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == ids[0])
            .values(status="handled", handled_at=datetime(2026, 11, 20, 10, 1, tzinfo=UTC))
        )
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == ids[1])
            .values(status="failed", attempts=3, last_error="provider rejected: 400")
        )
    return ids


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/events"), ("GET", "/api/events/1"), ("POST", "/api/events/1/replay")],
)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer ", "Bearer not-a-token", f"Basic {READ_TOKEN}", READ_TOKEN],
    ids=["none", "empty", "unknown", "basic", "no-scheme"],
)
def test_requests_without_a_known_token_are_401(
    *,
    client: TestClient,
    db: Database,
    enqueue: RecordingEnqueue,
    method: str,
    path: str,
    authorization: str | None,
) -> None:
    # Given a ledger with events
    seed(db)
    headers = {} if authorization is None else {"Authorization": authorization}
    # When an admin endpoint is called without a valid token
    response = client.request(method, path, headers=headers)
    # Then it is refused and nothing changes
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert [r.status for r in rows(db)] == ["handled", "failed", "pending"]
    assert enqueue.calls == []


def test_read_token_lists_events_newest_first(client: TestClient, db: Database) -> None:
    ids = seed(db)
    response = client.get("/api/events", headers=READ)
    assert response.status_code == 200
    page = response.json()
    assert (page["limit"], page["offset"]) == (50, 0)
    assert [e["id"] for e in page["events"]] == list(reversed(ids))
    failed = page["events"][1]
    received_at = failed.pop("received_at")
    assert datetime.fromisoformat(received_at).tzinfo is not None
    assert failed == {
        "id": ids[1],
        "source": "crm",
        "event_id": "evt_2",
        "type": "customer.updated",
        "customer_id": "cus_42",
        "occurred_at": "2026-11-20T10:00:00Z",
        "status": "failed",
        "attempts": 3,
        "last_error": "provider rejected: 400",
        "handled_at": None,
        "enqueued_at": None,
        "coalesced_into": None,
    }
    assert "payload" not in failed


def test_list_filters_by_status_and_pages(client: TestClient, db: Database) -> None:
    ids = seed(db)
    failed = client.get("/api/events", params={"status": "failed"}, headers=READ).json()
    assert [e["id"] for e in failed["events"]] == [ids[1]]
    page = client.get("/api/events", params={"limit": 1, "offset": 1}, headers=READ).json()
    assert [e["id"] for e in page["events"]] == [ids[1]]


def test_list_filters_by_since(client: TestClient, db: Database) -> None:
    seed(db)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert client.get("/api/events", params={"since": future}, headers=READ).json()["events"] == []
    recent = client.get("/api/events", params={"since": past}, headers=READ).json()
    assert len(recent["events"]) == 3


@pytest.mark.parametrize(
    "params", [{"status": "lost"}, {"limit": 0}, {"limit": 501}, {"offset": -1}, {"since": "x"}]
)
def test_invalid_list_parameters_are_422(
    client: TestClient, db: Database, params: dict[str, object]
) -> None:
    assert client.get("/api/events", params=params, headers=READ).status_code == 422


def test_read_token_gets_one_event_with_its_payload(client: TestClient, db: Database) -> None:
    ids = seed(db)
    response = client.get(f"/api/events/{ids[2]}", headers=READ)
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["event_id"], body["status"]) == (ids[2], "evt_3", "pending")
    assert body["payload"]["customer"]["email"] == "ada@example.com"
    assert body["payload"]["id"] == "evt_3"


def test_unknown_event_is_404(client: TestClient, db: Database) -> None:
    seed(db)
    response = client.get("/api/events/999999", headers=READ)
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown event"}


def test_read_token_cannot_replay(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a failed event and a token with only the read scope
    ids = seed(db)
    # When it asks for a replay
    response = client.post(f"/api/events/{ids[1]}/replay", headers=READ)
    # Then it is forbidden and nothing changes
    assert response.status_code == 403
    assert response.json() == {"detail": "token lacks the write scope"}
    assert [(r.status, r.attempts) for r in rows(db)] == [
        ("handled", 0),
        ("failed", 3),
        ("pending", 0),
    ]
    assert enqueue.calls == []


def test_write_token_replays_a_failed_event(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a failed event
    ids = seed(db)
    # When an operator replays it
    response = client.post(f"/api/events/{ids[1]}/replay", headers=WRITE)
    # Then it is pending again with a fresh attempt budget, committed, and enqueued once
    assert response.status_code == 202
    assert response.json() == {"id": ids[1], "status": "pending", "enqueued": True}
    replayed = rows(db)[1]
    assert (replayed.status, replayed.attempts, replayed.handled_at) == (
        EventStatus.PENDING,
        0,
        None,
    )
    assert replayed.last_error == "provider rejected: 400"
    assert enqueue.calls == [[ids[1]]]


def test_write_token_replays_a_handled_event(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    ids = seed(db)
    response = client.post(f"/api/events/{ids[0]}/replay", headers=WRITE)
    assert response.status_code == 202
    handled = rows(db)[0]
    assert (handled.status, handled.handled_at) == ("pending", None)
    assert enqueue.calls == [[ids[0]]]


def test_replay_of_unknown_event_is_404_and_enqueues_nothing(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    seed(db)
    response = client.post("/api/events/999999/replay", headers=WRITE)
    assert response.status_code == 404
    assert enqueue.calls == []


def test_replay_with_the_broker_down_is_committed_and_says_so(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    ids = seed(db)
    enqueue.error = ConnectionError("broker down")
    response = client.post(f"/api/events/{ids[1]}/replay", headers=WRITE)
    assert response.status_code == 202
    assert response.json() == {"id": ids[1], "status": "pending", "enqueued": False}
    assert rows(db)[1].status == "pending"
    assert enqueue.calls == [[ids[1]]]


def test_token_without_a_secret_never_matches(client: TestClient, db: Database) -> None:
    # "disabled" has scopes but no secret: an empty or "None" bearer must not match it
    seed(db)
    for token in ("None", "null", ""):
        response = client.get("/api/events", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


def test_admin_api_with_the_database_down_is_503(
    db_down_client: TestClient, enqueue: RecordingEnqueue
) -> None:
    listing = db_down_client.get("/api/events", headers=READ)
    replay = db_down_client.post("/api/events/1/replay", headers=WRITE)
    assert (listing.status_code, replay.status_code) == (503, 503)
    assert replay.headers["retry-after"] == "5"
    assert enqueue.calls == []


def make_dead(db: Database, pk: int, reason: str = "rejected: create_pass: rejected (400)") -> None:
    with db.session() as session:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == pk)
            .values(status="dead", attempts=1, last_error=reason)
        )


def test_list_filters_dead_events(client: TestClient, db: Database) -> None:
    # Given a handled, a failed (retrying), a pending and a dead event
    ids = seed(db)
    [dead] = record_events_of(db, "evt_4")
    make_dead(db, dead)
    # When the dead letter is listed
    page = client.get("/api/events", params={"status": "dead"}, headers=READ).json()
    # Then only the dead one shows, with the provider's reason
    assert [(e["id"], e["status"], e["last_error"]) for e in page["events"]] == [
        (dead, "dead", "rejected: create_pass: rejected (400)")
    ]
    assert dead not in ids


def record_events_of(db: Database, *event_ids: str) -> list[int]:
    events = [CanonicalEvent.model_validate(event(e)) for e in event_ids]
    with db.session() as session:
        return record_events(session, "crm", events).accepted_ids


def test_replaying_twice_enqueues_once(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a dead event
    ids = seed(db)
    make_dead(db, ids[1])
    # When it is replayed twice
    first = client.post(f"/api/events/{ids[1]}/replay", headers=WRITE)
    second = client.post(f"/api/events/{ids[1]}/replay", headers=WRITE)
    # Then it was enqueued once: the second replay found it pending already
    assert first.json() == {"id": ids[1], "status": "pending", "enqueued": True}
    assert second.status_code == 202
    assert second.json() == {"id": ids[1], "status": "pending", "enqueued": False}
    assert enqueue.calls == [[ids[1]]]
    assert rows(db)[1].enqueued_at is not None


def test_replay_of_a_pending_event_enqueues_nothing(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    ids = seed(db)
    response = client.post(f"/api/events/{ids[2]}/replay", headers=WRITE)
    assert response.json() == {"id": ids[2], "status": "pending", "enqueued": False}
    assert enqueue.calls == []


def test_replay_dead_replays_every_dead_event_once(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given two dead events among handled, failed and pending ones
    ids = seed(db)
    dead = record_events_of(db, "evt_4", "evt_5")
    for pk in dead:
        make_dead(db, pk)
    # When the dead letter is replayed twice
    first = client.post("/api/events/replay", params={"dead": "true"}, headers=WRITE)
    second = client.post("/api/events/replay", params={"dead": "true"}, headers=WRITE)
    # Then both dead events are pending and were enqueued once; nothing else changed
    assert first.status_code == 202
    assert first.json() == {"replayed": dead, "enqueued": True}
    assert second.json() == {"replayed": [], "enqueued": False}
    assert enqueue.calls == [dead]
    assert [r.status for r in rows(db)] == ["handled", "failed", "pending", "pending", "pending"]
    assert [r.attempts for r in rows(db)][3:] == [0, 0]
    assert ids[1] not in dead


def test_replay_since_takes_dead_and_failed_events_received_since(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a failed event, and a dead one received before the cut-off
    ids = seed(db)
    [old] = record_events_of(db, "evt_old")
    make_dead(db, old)
    with db.session() as session:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == old)
            .values(received_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    # When everything since an hour ago is replayed
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = client.post("/api/events/replay", params={"since": since}, headers=WRITE)
    # Then only the recent failed event is replayed
    assert response.json() == {"replayed": [ids[1]], "enqueued": True}
    assert enqueue.calls == [[ids[1]]]
    assert [r.status for r in rows(db)] == ["handled", "pending", "pending", "dead"]


def test_bulk_replay_needs_a_selection_and_the_write_scope(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    ids = seed(db)
    make_dead(db, ids[1])
    nothing = client.post("/api/events/replay", headers=WRITE)
    reader = client.post("/api/events/replay", params={"dead": "true"}, headers=READ)
    assert (nothing.status_code, reader.status_code) == (422, 403)
    assert enqueue.calls == []
    assert rows(db)[1].status == "dead"
