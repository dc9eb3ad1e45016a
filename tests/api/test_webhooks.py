"""POST /webhooks/{source}: verify, validate, record once, commit, then enqueue."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy.exc import OperationalError

from worker.api.app import create_app
from worker.config import ConfigError, Settings
from worker.db import Database
from worker.inbound.models import EventStatus

from .conftest import (
    OLD_SECRET,
    OLDER_SECRET,
    SECRET,
    UNKNOWN_SECRET,
    BrokerPing,
    RecordingEnqueue,
    event,
    row_count,
    rows,
    signed_headers,
)


def post(client: TestClient, body: bytes, headers: dict[str, str], source: str = "crm") -> Any:
    return client.post(f"/webhooks/{source}", content=body, headers=headers)


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# --- accepted -------------------------------------------------------------------------------


def test_valid_single_event_is_recorded_once_and_enqueued_once(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a signed canonical event
    body = encode(event("evt_1"))
    # When it is posted
    response = post(client, body, signed_headers(body))
    # Then it is acknowledged, stored as pending and enqueued by its ledger id
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0}
    [row] = rows(db)
    assert (row.source, row.event_id, row.type, row.customer_id) == (
        "crm",
        "evt_1",
        "customer.updated",
        "cus_42",
    )
    assert row.status == EventStatus.PENDING
    assert row.attempts == 0
    assert row.payload == {
        "id": "evt_1",
        "type": "customer.updated",
        "occurred_at": "2026-11-20T10:00:00Z",
        "customer": {
            "id": "cus_42",
            "email": "ada@example.com",
            "first_name": "Ada",
            "last_name": None,
            "attributes": {},
        },
        "data": {"points": 120},
    }
    assert enqueue.wait_for(1) == [[row.id]]


def test_batch_records_every_event_and_enqueues_them_in_one_call(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a signed batch of three events
    body = encode({"events": [event("evt_a"), event("evt_b"), event("evt_c")]})
    # When it is posted
    response = post(client, body, signed_headers(body))
    # Then all three are stored and enqueued together
    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "duplicates": 0}
    stored = rows(db)
    assert [r.event_id for r in stored] == ["evt_a", "evt_b", "evt_c"]
    assert enqueue.wait_for(1) == [[r.id for r in stored]]


def test_repeated_id_inside_one_batch_counts_as_duplicate(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a batch that carries evt_a twice
    body = encode({"events": [event("evt_a"), event("evt_b"), event("evt_a", type="x.y")]})
    # When it is posted
    response = post(client, body, signed_headers(body))
    # Then the first evt_a wins and the repeat is a duplicate
    assert response.json() == {"accepted": 2, "duplicates": 1}
    stored = rows(db)
    assert [(r.event_id, r.type) for r in stored] == [
        ("evt_a", "customer.updated"),
        ("evt_b", "customer.updated"),
    ]
    assert enqueue.wait_for(1) == [[r.id for r in stored]]


def test_same_signed_event_delivered_three_times_is_recorded_and_enqueued_once(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given one signed delivery
    body = encode(event("evt_1"))
    headers = signed_headers(body)
    # When the sender retries it twice
    answers = [post(client, body, headers) for _ in range(3)]
    # Then every delivery is acknowledged, but only the first is new
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.json() for a in answers] == [
        {"accepted": 1, "duplicates": 0},
        {"accepted": 0, "duplicates": 1},
        {"accepted": 0, "duplicates": 1},
    ]
    [row] = rows(db)
    assert enqueue.wait_for(1) == [[row.id]]


def test_same_event_id_from_another_source_is_a_different_event(
    settings_factory: Callable[..., Settings],
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> None:
    # Given two sources that both send evt_1
    settings = settings_factory(sources={"crm": {"secret": SECRET}, "shop": {"secret": SECRET}})
    body = encode(event("evt_1"))
    with TestClient(create_app(settings, db, enqueue, broker)) as client:
        # When each delivers it
        first = post(client, body, signed_headers(body), source="crm")
        second = post(client, body, signed_headers(body), source="shop")
    # Then the ledger keeps one row per source
    assert (first.json(), second.json()) == ({"accepted": 1, "duplicates": 0},) * 2
    assert [(r.source, r.event_id) for r in rows(db)] == [("crm", "evt_1"), ("shop", "evt_1")]
    assert len(enqueue.wait_for(2)) == 2


@pytest.mark.parametrize("secret", [OLD_SECRET, OLDER_SECRET], ids=["raw-base64", "whsec"])
def test_rotated_out_secret_is_still_accepted(
    client: TestClient, db: Database, enqueue: RecordingEnqueue, secret: str
) -> None:
    # Given a sender still signing with a secret listed in previous_secrets
    body = encode(event("evt_1"))
    # When it posts
    response = post(client, body, signed_headers(body, secret))
    # Then the event is accepted
    assert response.status_code == 202
    [row] = rows(db)
    assert enqueue.wait_for(1) == [[row.id]]


def test_one_matching_signature_among_several_is_enough(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a sender in rotation that sends an unknown signature and a valid one
    body = encode(event("evt_1"))
    headers = signed_headers(body)
    unknown = signed_headers(body, UNKNOWN_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"{unknown} v1a,c2lnbmF0dXJl {headers['webhook-signature']}"
    # When it posts
    response = post(client, body, headers)
    # Then the event is accepted
    assert response.status_code == 202
    assert row_count(db) == 1


def test_tolerance_comes_from_the_settings(
    settings_factory: Callable[..., Settings],
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> None:
    # Given a 30-minute tolerance (the library alone would stop at 5)
    settings = settings_factory(api={"signature_tolerance_seconds": 1800})
    body = encode(event("evt_1"))
    with TestClient(create_app(settings, db, enqueue, broker)) as client:
        # When a delivery signed 20 minutes ago arrives
        response = post(client, body, signed_headers(body, timestamp=int(time.time()) - 1200))
    # Then it is accepted
    assert response.status_code == 202
    assert row_count(db) == 1


# --- refused: signature ---------------------------------------------------------------------

BODY = encode(event("evt_1"))


def _without(name: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda headers: {k: v for k, v in headers.items() if k != name}


def _with(name: str, value: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda headers: {**headers, name: value}


SIGNATURE_CASES: dict[str, tuple[Callable[[dict[str, str]], dict[str, str]], str]] = {
    "no-id": (_without("webhook-id"), "missing signature headers"),
    "no-timestamp": (_without("webhook-timestamp"), "missing signature headers"),
    "no-signature": (_without("webhook-signature"), "missing signature headers"),
    "signature-without-comma": (_with("webhook-signature", "v1"), "malformed webhook-signature"),
    "signature-not-base64": (
        _with("webhook-signature", "v1,***not-base64***"),
        "malformed webhook-signature",
    ),
    "signature-wrong-length": (
        _with("webhook-signature", "v1,YWJj"),
        "malformed webhook-signature",
    ),
    "only-v1a": (_with("webhook-signature", "v1a,c2lnbmF0dXJl"), "no v1 signature"),
    "timestamp-not-integer": (_with("webhook-timestamp", "1e9"), "malformed webhook-timestamp"),
    "other-message-id": (_with("webhook-id", "msg_2"), "no matching signature"),
}


@pytest.mark.parametrize("case", list(SIGNATURE_CASES))
def test_bad_signature_headers_are_refused_with_401(
    client: TestClient, db: Database, enqueue: RecordingEnqueue, case: str
) -> None:
    # Given a correctly signed delivery whose headers are then broken
    change, reason = SIGNATURE_CASES[case]
    headers = change(signed_headers(BODY))
    # When it is posted
    response = post(client, BODY, headers)
    # Then it is refused with a short reason, nothing is stored and nothing enqueued
    assert response.status_code == 401
    assert response.json() == {"detail": reason}
    assert row_count(db) == 0
    assert enqueue.calls == []


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-301, "timestamp too old"), (330, "timestamp too new")],
    ids=["stale", "future"],
)
def test_timestamp_outside_tolerance_is_refused(
    client: TestClient, db: Database, enqueue: RecordingEnqueue, offset: int, reason: str
) -> None:
    # Given a delivery correctly signed, but with a timestamp just outside the 300 s window
    # (the future one with a margin: a slow machine may take a second or two to answer)
    headers = signed_headers(BODY, timestamp=int(time.time()) + offset)
    # When it is posted
    response = post(client, BODY, headers)
    # Then it is refused
    assert response.status_code == 401
    assert response.json() == {"detail": reason}
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_signature_from_an_unknown_secret_is_refused(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    response = post(client, BODY, signed_headers(BODY, UNKNOWN_SECRET))
    assert response.status_code == 401
    assert response.json() == {"detail": "no matching signature"}
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_body_changed_after_signing_is_refused(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a signature over the original bytes, and a body re-serialised with other spacing
    headers = signed_headers(BODY)
    reformatted = json.dumps(event("evt_1"), indent=2).encode()
    # When the re-serialised body is posted
    response = post(client, reformatted, headers)
    # Then the signature no longer matches
    assert response.status_code == 401
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_non_utf8_body_is_refused_with_401_not_500(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    body = b'{"id": "\xff"}'
    headers = signed_headers(b"{}")
    response = post(client, body, headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "body is not UTF-8"}
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_source_without_a_secret_refuses_every_request(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given source "pos" with no secret configured, and a delivery signed with some secret
    response = post(client, BODY, signed_headers(BODY), source="pos")
    # Then it is refused rather than accepted unsigned
    assert response.status_code == 401
    assert response.json() == {"detail": "no secret configured for this source"}
    unsigned = client.post("/webhooks/pos", content=BODY)
    assert unsigned.status_code == 401
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_secret_that_is_not_base64_stops_the_app_factory(
    settings_factory: Callable[..., Settings],
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> None:
    settings = settings_factory(sources={"crm": {"secret": "whsec_not base64!"}})
    with pytest.raises(ConfigError) as caught:
        create_app(settings, db, enqueue, broker)
    assert str(caught.value) == (
        "setting sources.crm (PASSSYNC_SOURCES__CRM__SECRET / __PREVIOUS_SECRETS): "
        "secret is not valid base64"
    )
    assert "not base64!" not in str(caught.value)


# --- refused: routing, size, JSON, validation -----------------------------------------------


def test_unknown_source_is_404(client: TestClient, db: Database, enqueue: RecordingEnqueue) -> None:
    response = post(client, BODY, signed_headers(BODY), source="nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown source"}
    assert row_count(db) == 0
    assert enqueue.calls == []


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"id": "evt_1",', "body is not valid JSON"),
        (b"", "body is not valid JSON"),
        (b'{"id": NaN}', "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'"evt_1"', "body must be a JSON object"),
    ],
    ids=["truncated", "empty", "nan", "array", "string"],
)
def test_malformed_json_is_400(
    client: TestClient, db: Database, enqueue: RecordingEnqueue, body: bytes, detail: str
) -> None:
    response = post(client, body, signed_headers(body))
    assert response.status_code == 400
    assert response.json() == {"detail": detail}
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_missing_fields_are_422_with_field_errors_only(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given an event without type and customer, and an occurred_at without a time zone
    payload = event("evt_1", occurred_at="2026-11-20T10:00:00")
    del payload["type"], payload["customer"]
    body = encode(payload)
    # When it is posted
    response = post(client, body, signed_headers(body))
    # Then each problem is named by location, without echoing the input
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"loc": ["body", "type"], "msg": "Field required", "type": "missing"},
            {
                "loc": ["body", "occurred_at"],
                "msg": "Input should have timezone info",
                "type": "timezone_aware",
            },
            {"loc": ["body", "customer"], "msg": "Field required", "type": "missing"},
        ]
    }
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_invalid_event_in_a_batch_rejects_the_whole_batch(
    client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a batch whose second event has a bad type and carries personal data
    bad = event("evt_b", type="Not A Type", customer={"id": "cus_1", "email": "x@secret.example"})
    body = encode({"events": [event("evt_a"), bad]})
    # When it is posted
    response = post(client, body, signed_headers(body))
    # Then nothing of the batch is stored and the answer does not echo the input
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["body", "events", 1, "type"],
                "msg": "String should match pattern '^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$'",
                "type": "string_pattern_mismatch",
            }
        ]
    }
    assert "Not A Type" not in response.text
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_batch_over_the_maximum_is_422(
    settings_factory: Callable[..., Settings],
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> None:
    # Given a limit of 2 events per batch
    settings = settings_factory(api={"max_batch_events": 2})
    body = encode({"events": [event("evt_a"), event("evt_b"), event("evt_c")]})
    with TestClient(create_app(settings, db, enqueue, broker)) as client:
        # When 3 are posted
        response = post(client, body, signed_headers(body))
    # Then the batch is refused as a whole
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"loc": ["body", "events"], "msg": "a batch holds at most 2 events", "type": "too_long"}
        ]
    }
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_empty_batch_is_422(client: TestClient, db: Database, enqueue: RecordingEnqueue) -> None:
    body = encode({"events": []})
    response = post(client, body, signed_headers(body))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "events"]
    assert row_count(db) == 0
    assert enqueue.calls == []


@pytest.fixture
def small_limit_client(
    settings_factory: Callable[..., Settings],
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> TestClient:
    settings = settings_factory(api={"max_body_bytes": 1024})
    return TestClient(create_app(settings, db, enqueue, broker))


def test_oversize_body_with_content_length_is_413(
    small_limit_client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a correctly signed body of 1025 bytes against a 1024-byte limit
    body = encode(event("evt_1", data={"pad": "x" * 2000}))[:1025]
    response = post(small_limit_client, body, signed_headers(body))
    assert response.status_code == 413
    assert response.json() == {"detail": "body exceeds 1024 bytes"}
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_oversize_chunked_body_without_content_length_is_413(
    small_limit_client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a signed body sent with chunked encoding (no Content-Length)
    body = encode(event("evt_1", data={"pad": "x" * 2000}))
    headers = signed_headers(body)
    # When it is streamed
    response = small_limit_client.post(
        "/webhooks/crm",
        content=iter([body[i : i + 100] for i in range(0, len(body), 100)]),
        headers=headers,
    )
    # Then it is refused by size
    assert response.request.headers.get("content-length") is None
    assert response.status_code == 413
    assert row_count(db) == 0
    assert enqueue.calls == []


async def _asgi_post(
    app: FastAPI, path: str, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, int]:
    """Drive the app directly; returns (status, how many body chunks it asked for)."""
    asked = 0
    messages: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if asked < len(chunks):
            asked += 1
            return {"type": "http.request", "body": chunks[asked - 1], "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    return start["status"], asked


def test_streamed_body_is_abandoned_as_soon_as_it_exceeds_the_limit(
    settings_factory: Callable[..., Settings],
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> None:
    # Given a 1024-byte limit and a sender streaming 100 chunks of 100 bytes
    app = create_app(settings_factory(api={"max_body_bytes": 1024}), db, enqueue, broker)
    chunks = [b"x" * 100] * 100
    # When it is received
    status, asked = anyio.run(_asgi_post, app, "/webhooks/crm", signed_headers(b"x"), chunks)
    # Then reading stops at the 11th chunk (1100 bytes)
    assert (status, asked) == (413, 11)
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_unknown_source_is_refused_before_the_body_is_read(
    app: FastAPI, db: Database, enqueue: RecordingEnqueue
) -> None:
    status, asked = anyio.run(_asgi_post, app, "/webhooks/nope", {}, [BODY])
    assert (status, asked) == (404, 0)
    assert enqueue.calls == []


def test_unsigned_request_is_refused_before_the_body_is_read(
    app: FastAPI, db: Database, enqueue: RecordingEnqueue
) -> None:
    status, asked = anyio.run(_asgi_post, app, "/webhooks/crm", {}, [BODY])
    assert (status, asked) == (401, 0)
    assert row_count(db) == 0
    assert enqueue.calls == []


# --- failures after validation --------------------------------------------------------------


def test_enqueue_failure_still_answers_202_and_leaves_the_event_pending(
    client: TestClient,
    db: Database,
    enqueue: RecordingEnqueue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a broker that is down (its error message carries a password)
    enqueue.error = ConnectionError("redis://:hunter2@broker:6379 refused")
    # When a valid event arrives
    with caplog.at_level(logging.WARNING, logger="passsync"):
        response = post(client, BODY, signed_headers(BODY))
    # Then it is acknowledged and committed as pending for the sweeper
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0}
    [row] = rows(db)
    assert row.status == EventStatus.PENDING
    assert enqueue.wait_for(1) == [[row.id]]
    assert [r.getMessage() for r in caplog.records] == [
        "enqueue failed for 1 committed event(s) (ConnectionError); left pending for the sweeper"
    ]
    assert "hunter2" not in caplog.text


def test_unreachable_database_is_503_with_retry_after(
    db_down_client: TestClient, db: Database, enqueue: RecordingEnqueue
) -> None:
    # Given a receiver whose database cannot be opened
    # When a valid event arrives
    response = post(db_down_client, BODY, signed_headers(BODY))
    # Then the sender is told to retry later and nothing is enqueued
    assert response.status_code == 503
    assert response.json() == {"detail": "database unavailable"}
    assert response.headers["retry-after"] == "5"
    assert enqueue.calls == []
    assert row_count(db) == 0


def test_failing_commit_is_503_and_leaves_nothing_half_written(
    settings_factory: Callable[..., Settings],
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> None:
    # Given the SQLAlchemy writer (the async Postgres writer has its own test in
    # test_intake.py), and a database connection that drops at COMMIT, after the INSERT ran
    settings = settings_factory(api={"ingest": {"async_driver": False}})

    def drop(conn: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    sa_event.listen(db.engine, "commit", drop)
    try:
        with TestClient(create_app(settings, db, enqueue, broker)) as client:
            # When a batch arrives
            body = encode({"events": [event("evt_a"), event("evt_b")]})
            response = post(client, body, signed_headers(body))
    finally:
        sa_event.remove(db.engine, "commit", drop)
    # Then the answer is 503, no row survives and nothing is enqueued
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert row_count(db) == 0
    assert enqueue.calls == []


def test_logs_never_contain_secrets_or_signature_headers(
    client: TestClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # Given accepted, refused and duplicate deliveries
    headers = signed_headers(BODY)
    bad = signed_headers(BODY, UNKNOWN_SECRET)
    with caplog.at_level(logging.DEBUG):
        post(client, BODY, headers)
        post(client, BODY, headers)
        post(client, BODY, bad)
        post(client, b"{", signed_headers(b"{"))
    # Then no log line carries a secret or signature material
    forbidden = [
        SECRET,
        SECRET.removeprefix("whsec_"),
        UNKNOWN_SECRET.removeprefix("whsec_"),
        headers["webhook-signature"],
        headers["webhook-signature"].removeprefix("v1,"),
        bad["webhook-signature"].removeprefix("v1,"),
    ]
    assert caplog.records, "expected the refusals to be logged"
    for text in forbidden:
        assert text not in caplog.text
