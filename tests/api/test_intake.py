"""Group commit and back-pressure: the receiver's intake against the real test database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text

from worker.api import pg_ledger
from worker.api.app import create_app
from worker.api.intake import (
    Batches,
    GroupWriter,
    Intake,
    IntakeUnavailableError,
    build_writers,
)
from worker.api.pg_ledger import DatabaseUnavailableError
from worker.config import IngestSettings, Settings
from worker.db import Database
from worker.inbound.ledger import RecordResult
from worker.inbound.models import EventStatus
from worker.inbound.schema import CanonicalEvent

from .conftest import BrokerPing, RecordingEnqueue, event, row_count, rows, signed_headers

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def canonical(event_id: str) -> CanonicalEvent:
    return CanonicalEvent.model_validate(event(event_id))


class CountingWriter:
    """Delegates to a real writer; records each group's size; can be held or made to fail."""

    def __init__(self, inner: GroupWriter) -> None:
        self.inner = inner
        self.groups: list[int] = []
        self.hold: asyncio.Event | None = None
        self.error: Exception | None = None

    async def write(self, batches: Batches) -> list[RecordResult]:
        self.groups.append(len(batches))
        if self.hold is not None:
            await self.hold.wait()
        if self.error is not None:
            raise self.error
        return await self.inner.write(batches)

    async def close(self) -> None:
        await self.inner.close()


def intake_for(
    db: Database, publish: Callable[[list[int]], None], **settings: Any
) -> tuple[Intake, CountingWriter]:
    ingest = IngestSettings(writers=1, **settings)
    writer = CountingWriter(build_writers(db, ingest)[0])
    return Intake([writer], publish, ingest), writer


def test_concurrent_requests_share_one_transaction_and_each_gets_its_own_result(
    db: Database,
) -> None:
    # Given an intake with one writer
    published: list[list[int]] = []
    intake, writer = intake_for(db, published.append)

    async def scenario() -> list[RecordResult]:
        # When 50 requests arrive together, the last one repeating the first one's event
        requests = [intake.submit("crm", [canonical(f"evt_{n}")]) for n in range(50)]
        requests.append(intake.submit("crm", [canonical("evt_0"), canonical("evt_new")]))
        results = await asyncio.gather(*requests)
        await intake.stop()
        return list(results)

    results = run(scenario())
    # Then one transaction recorded all of them, each request got its own answer, the
    # repeated event counts as a duplicate for the later request, and one publish happened
    assert writer.groups == [51]
    assert [len(r.accepted_ids) for r in results[:50]] == [1] * 50
    assert results[50].duplicates == 1 and len(results[50].accepted_ids) == 1
    assert row_count(db) == 51
    assert published == [sorted(pk for r in results for pk in r.accepted_ids)]


def test_a_full_queue_refuses_new_requests_and_records_nothing_of_them(db: Database) -> None:
    # Given a database so slow that nothing commits, and room for 4 pending events
    intake, writer = intake_for(db, lambda _ids: None, max_pending_events=4)

    async def scenario() -> tuple[list[RecordResult], IntakeUnavailableError]:
        writer.hold = asyncio.Event()
        waiting = [
            asyncio.create_task(intake.submit("crm", [canonical(f"evt_{n}"), canonical(f"x{n}")]))
            for n in range(2)
        ]
        await asyncio.sleep(0.05)
        # When a third request arrives while 4 events wait for their commit
        with pytest.raises(IntakeUnavailableError) as refused:
            await intake.submit("crm", [canonical("evt_late")])
        assert intake.overloaded
        # and the database recovers
        writer.hold.set()
        done = await asyncio.gather(*waiting)
        await intake.stop()
        return list(done), refused.value

    done, refused = run(scenario())
    # Then the third was refused at once with a retry hint, the first two were recorded
    assert (refused.reason, refused.retry_after) == ("receiver overloaded", 5)
    assert [len(r.accepted_ids) for r in done] == [2, 2]
    assert sorted(r.event_id for r in rows(db)) == ["evt_0", "evt_1", "x0", "x1"]
    assert intake.stats.refused_overload == 1 and intake.stats.pending_events == 0


def test_a_commit_slower_than_the_timeout_answers_503_and_a_retry_is_a_duplicate(
    db: Database,
) -> None:
    # Given a commit that takes longer than the request may wait
    intake, writer = intake_for(db, lambda _ids: None, commit_timeout_seconds=0.1)

    async def scenario() -> tuple[IntakeUnavailableError, RecordResult]:
        writer.hold = asyncio.Event()
        with pytest.raises(IntakeUnavailableError) as slow:
            await intake.submit("crm", [canonical("evt_1")])
        # When the commit finally lands and the sender retries
        writer.hold.set()
        await asyncio.sleep(0.2)
        retry = await intake.submit("crm", [canonical("evt_1")])
        await intake.stop()
        return slow.value, retry

    slow, retry = run(scenario())
    # Then the first answer was 503-worthy, and the retry finds the event already recorded
    assert slow.reason == "database too slow"
    assert (retry.accepted_ids, retry.duplicates) == ([], 1)
    assert row_count(db) == 1


def test_a_database_outage_fails_the_group_then_refuses_fast_until_the_cooldown_ends(
    db: Database,
) -> None:
    # Given a database that has gone away
    intake, writer = intake_for(db, lambda _ids: None, database_cooldown_seconds=0.3)

    async def scenario() -> tuple[list[BaseException | RecordResult], int, RecordResult]:
        writer.error = DatabaseUnavailableError("OperationalError")
        first = await asyncio.gather(
            intake.submit("crm", [canonical("evt_1")]),
            intake.submit("crm", [canonical("evt_2")]),
            return_exceptions=True,
        )
        # When another request comes during the cooldown, and one after it (database back)
        with pytest.raises(IntakeUnavailableError):
            await intake.submit("crm", [canonical("evt_3")])
        calls_during_cooldown = len(writer.groups)
        writer.error = None
        await asyncio.sleep(0.35)
        later = await intake.submit("crm", [canonical("evt_4")])
        await intake.stop()
        return list(first), calls_during_cooldown, later

    first, calls, later = run(scenario())
    # Then both requests of the failed group got 503, the cooldown spared the database,
    # and only the request after the outage is recorded
    assert all(
        isinstance(r, IntakeUnavailableError) and r.reason == "database unavailable" for r in first
    )
    assert calls == 1
    assert len(later.accepted_ids) == 1
    assert [r.event_id for r in rows(db)] == ["evt_4"]


def test_a_failed_publish_leaves_events_pending_and_spares_the_broker_for_a_while(
    db: Database,
) -> None:
    # Given a broker that refuses publishes
    attempts: list[list[int]] = []

    def broker_down(ids: list[int]) -> None:
        attempts.append(ids)
        raise ConnectionError("redis://:hunter2@broker refused")

    intake, _writer = intake_for(db, broker_down, broker_cooldown_seconds=60)

    async def scenario() -> list[RecordResult]:
        first = await intake.submit("crm", [canonical("evt_1")])
        second = await intake.submit("crm", [canonical("evt_2")])
        await intake.stop()
        return [first, second]

    results = run(scenario())
    # Then both are accepted (committed), pending for the sweeper, and the broker was
    # tried once: the second group did not wait on a broker known to be down
    assert [len(r.accepted_ids) for r in results] == [1, 1]
    assert [r.status for r in rows(db)] == [EventStatus.PENDING, EventStatus.PENDING]
    assert len(attempts) == 1
    assert intake.stats.left_for_sweeper == 2 and intake.stats.state["broker"] == "unavailable"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_async_writer_losing_its_connection_mid_insert_writes_nothing_and_reconnects(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the async Postgres writer, whose connection dies inside the insert statement
    # (the server terminates the session after the rows were inserted, before any commit)
    killing = (
        f"WITH ins AS ({pg_ledger.UNNEST_INSERT_SQL}) "
        "SELECT ins.*, pg_terminate_backend(pg_backend_pid()) FROM ins"
    )
    original = pg_ledger.UNNEST_INSERT_SQL
    intake, _writer = intake_for(db, lambda _ids: None, database_cooldown_seconds=0.05)

    async def scenario() -> tuple[IntakeUnavailableError, RecordResult]:
        monkeypatch.setattr(pg_ledger, "UNNEST_INSERT_SQL", killing)
        with pytest.raises(IntakeUnavailableError) as lost:
            await intake.submit("crm", [canonical("evt_1"), canonical("evt_2")])
        monkeypatch.setattr(pg_ledger, "UNNEST_INSERT_SQL", original)
        await asyncio.sleep(0.1)
        # When the next request comes
        after = await intake.submit("crm", [canonical("evt_3")])
        await intake.stop()
        return lost.value, after

    lost, after = run(scenario())
    # Then the first got 503 with nothing half-written, and the writer reconnected
    assert lost.reason == "database unavailable"
    assert len(after.accepted_ids) == 1
    assert [r.event_id for r in rows(db)] == ["evt_3"]


def test_an_overloaded_receiver_answers_503_with_retry_after_and_readyz_says_so(
    settings_factory: Callable[..., Settings],
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> None:
    # Given a receiver with room for 2 pending events and a database held by a lock
    settings = settings_factory(api={"ingest": {"max_pending_events": 2}})
    app = create_app(settings, db, enqueue, broker)
    blocker = db.engine.connect()
    blocker.begin()  # on SQLite this is BEGIN IMMEDIATE: the write lock (see worker/db.py)
    if not db.is_sqlite:
        blocker.execute(text("LOCK TABLE inbound_events IN EXCLUSIVE MODE"))

    def request(event_id: str) -> dict[str, Any]:
        body = json.dumps(event(event_id)).encode()
        return {"content": body, "headers": signed_headers(body, msg_id=f"msg_{event_id}")}

    async def scenario() -> tuple[Sequence[httpx.Response], httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            waiting = [
                asyncio.create_task(http.post("/webhooks/crm", **request(f"evt_{n}")))
                for n in range(2)
            ]
            await asyncio.sleep(0.3)
            # When a third request arrives and readiness is probed
            refused = await http.post("/webhooks/crm", **request("evt_late"))
            ready = await http.get("/readyz")
            # and the database is released
            await asyncio.to_thread(blocker.rollback)
            done = await asyncio.gather(*waiting)
            await app.state.passsync.intake.stop()
        return done, refused, ready

    try:
        done, refused, ready = run(scenario())
    finally:
        blocker.close()
    # Then the third was refused with 503 and Retry-After, readiness said why, and the
    # first two were recorded once the database answered
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert refused.json() == {"detail": "receiver overloaded"}
    assert ready.status_code == 503 and ready.json()["ingest"] == "overloaded"
    assert [r.status_code for r in done] == [202, 202]
    assert sorted(r.event_id for r in rows(db)) == ["evt_0", "evt_1"]
