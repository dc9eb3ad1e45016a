"""M2: one request's data can never fail the commit of the others in its group."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from tests.hardening.conftest import event
from worker.api.intake import Batches, GroupWriter, Intake, build_writers
from worker.config import IngestSettings
from worker.db import Database
from worker.inbound.ledger import RecordResult
from worker.inbound.schema import CanonicalEvent, Customer

POISON = "poison"


class PoisonWriter:
    """The real writer, refusing any group that holds the poison event (as a database would)."""

    def __init__(self, inner: GroupWriter) -> None:
        self.inner = inner
        self.groups: list[int] = []

    async def write(self, batches: Batches) -> list[RecordResult]:
        self.groups.append(len(batches))
        if any(e.id == POISON for _, events in batches for e in events):
            raise ValueError("refused by the database")
        return await self.inner.write(batches)

    async def close(self) -> None:
        await self.inner.close()


def canonical(event_id: str) -> CanonicalEvent:
    return CanonicalEvent.model_validate(event(event_id))


def unstorable(event_id: str) -> CanonicalEvent:
    # Past validation (as a bug or a future field might let it through): a NUL character,
    # which Postgres text and JSONB refuse.
    return CanonicalEvent.model_construct(
        id=event_id,
        type="customer.updated",
        occurred_at=canonical(event_id).occurred_at,
        customer=Customer.model_construct(id="cus\x00", attributes={}),
        data={"k": "\x00"},
    )


async def submit_together(intake: Intake, requests: Sequence[list[CanonicalEvent]]) -> list[Any]:
    intake.start()
    results = await asyncio.gather(
        *(intake.submit("crm", events) for events in requests), return_exceptions=True
    )
    await intake.stop()
    return list(results)


def test_a_refused_request_fails_alone_and_its_group_commits(db: Database) -> None:
    # Given one writer (so concurrent requests share a group) that refuses the poison event
    settings = IngestSettings(writers=1)
    writer = PoisonWriter(build_writers(db, settings)[0])
    intake = Intake([writer], lambda ids: None, settings)
    requests = [[canonical(f"ok_{n}")] for n in range(5)]
    requests.insert(2, [canonical(POISON)])
    # When six requests arrive at once
    results = asyncio.run(submit_together(intake, requests))
    # Then they were committed as a group, refused, and written again one by one:
    # five are recorded, and only the poison request fails
    assert writer.groups[0] == 6
    assert isinstance(results[2], ValueError)
    good = [r for n, r in enumerate(results) if n != 2]
    assert all(isinstance(r, RecordResult) and len(r.accepted_ids) == 1 for r in good)
    assert intake.stats.events_committed == 5


def test_postgres_refusing_one_request_keeps_the_others(pg_url: str) -> None:
    # Postgres only: SQLite stores NUL characters, Postgres refuses them.
    db = Database(pg_url)
    settings = IngestSettings(writers=1)
    intake = Intake(build_writers(db, settings), lambda ids: None, settings)
    run = uuid.uuid4().hex
    requests = [[canonical(f"ok_1_{run}")], [unstorable(f"bad_{run}")], [canonical(f"ok_2_{run}")]]
    try:
        results = asyncio.run(submit_together(intake, requests))
    finally:
        db.dispose()
    assert isinstance(results[0], RecordResult) and isinstance(results[2], RecordResult)
    assert isinstance(results[1], Exception)
    assert intake.stats.events_committed == 2
