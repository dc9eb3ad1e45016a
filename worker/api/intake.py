"""Group commit for the receiver: concurrent requests share one ledger transaction.

A request hands its verified, validated events to `Intake.submit` and waits. Writer tasks
take everything that has queued up (up to `max_group_events`), write it with one multi-row
`INSERT ... ON CONFLICT DO NOTHING RETURNING` in one transaction, commit, wake the
requests, which answer 202, and then publish the new ids to the broker (a request waits for
its commit, never for the broker: that halved tail latency). While one group
commits the next one fills, so the number of commits per second stays flat as load grows,
and a lone request is never delayed for a batch to fill.

Durability: a request is answered 202 only after the commit of its group. A publish that
fails after the commit, or a process that dies before publishing, leaves the events pending
in the ledger for the sweeper: they are safe either way.

Back-pressure: the events waiting for a commit are bounded (`max_pending_events`); beyond
that, and for a while after a failed commit, requests are refused at once with 503 and
Retry-After, so a slow or dead database never turns into unbounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from worker.api.pg_ledger import AsyncPostgresLedger, DatabaseUnavailableError
from worker.config import IngestSettings
from worker.db import DATABASE_UNAVAILABLE, Database
from worker.inbound.ledger import RecordResult, record_batches
from worker.inbound.schema import CanonicalEvent
from worker.observability import tracing

log = logging.getLogger("passsync.api.intake")

Publish = Callable[[list[int]], None]
Batches = Sequence[tuple[str, Sequence[CanonicalEvent]]]


class GroupWriter(Protocol):
    """Records a group of batches in one transaction; one writer serves one writer task."""

    async def write(self, batches: Batches) -> list[RecordResult]: ...

    async def close(self) -> None: ...


class ThreadedWriter:
    """The SQLAlchemy session in a worker thread (SQLite, or Postgres without the async path)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def write(self, batches: Batches) -> list[RecordResult]:
        return await anyio.to_thread.run_sync(self._write, batches)

    def _write(self, batches: Batches) -> list[RecordResult]:
        with self._db.session() as session:  # one transaction, committed on leaving the block
            return record_batches(session, batches)

    async def close(self) -> None:
        return None


_UNAVAILABLE: tuple[type[Exception], ...] = (*DATABASE_UNAVAILABLE, DatabaseUnavailableError)


class IntakeUnavailableError(Exception):
    """The events were not recorded; the client should retry after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class _Request:
    source: str
    events: Sequence[CanonicalEvent]
    done: asyncio.Future[RecordResult]
    trace: dict[str, str] | None = None  # W3C headers of the request's span (tracing on)


@dataclass
class IntakeStats:
    """Counters for /readyz and the benchmark."""

    pending_events: int = 0
    groups: int = 0
    events_committed: int = 0
    refused_overload: int = 0
    refused_database: int = 0
    publish_failures: int = 0
    left_for_sweeper: int = 0
    largest_group: int = 0
    state: dict[str, str] = field(default_factory=lambda: {"database": "ok", "broker": "ok"})


class Intake:
    """The group-commit queue of one API process; start it inside the event loop."""

    def __init__(
        self, writers: Sequence[GroupWriter], publish: Publish, settings: IngestSettings
    ) -> None:
        self._writers = list(writers)
        self._publish = publish
        self._settings = settings
        self._queue: deque[_Request] = deque()
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = 0
        self._database_down_until = 0.0
        self._broker_down_until = 0.0
        self._traces: dict[int, dict[int, dict[str, str]]] = {}  # group -> ledger id -> W3C
        self.stats = IntakeStats()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer tasks on the running loop (again, if an earlier loop has ended)."""
        loop = asyncio.get_running_loop()
        if self._tasks and self._loop is loop and not any(t.done() for t in self._tasks):
            return
        if self._tasks and self._loop is not None and self._loop.is_running():
            raise RuntimeError("the intake serves one event loop; run the app with its lifespan")
        # A test client without lifespan runs each request on a fresh loop; writers that
        # belonged to a finished loop are gone, and requests queued there went with it.
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._run_writer(writer), name=f"intake-writer-{n}")
            for n, writer in enumerate(self._writers)
        ]

    async def stop(self) -> None:
        """Commit and publish what is queued or in flight, then stop the writers."""
        while (self._queue or self._busy) and self._tasks:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for writer in self._writers:
            await writer.close()

    # -- the request side --------------------------------------------------------------------

    async def submit(self, source: str, events: Sequence[CanonicalEvent]) -> RecordResult:
        """Record the events durably (group commit), then return; or raise IntakeUnavailable."""
        self.start()
        s = self._settings
        if time.monotonic() < self._database_down_until:
            self.stats.refused_database += 1
            raise IntakeUnavailableError("database unavailable", s.retry_after_seconds)
        if self.stats.pending_events + len(events) > s.max_pending_events:
            self.stats.refused_overload += 1
            raise IntakeUnavailableError("receiver overloaded", s.retry_after_seconds)
        request = _Request(
            source, events, asyncio.get_running_loop().create_future(), tracing.current_carrier()
        )
        self._queue.append(request)
        self.stats.pending_events += len(events)
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            # Cancelling this request's future on timeout is harmless: the writer only sets
            # results on futures that are still pending, and the group commits regardless.
            async with asyncio.timeout(s.commit_timeout_seconds):
                return await request.done
        except TimeoutError:
            raise IntakeUnavailableError("database too slow", s.retry_after_seconds) from None

    @property
    def overloaded(self) -> bool:
        return self.stats.pending_events >= self._settings.max_pending_events

    # -- the writer side ---------------------------------------------------------------------

    async def _run_writer(self, writer: GroupWriter) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group = self._take_group()
            self._busy += 1
            try:
                await self._commit_group(writer, group)
            finally:
                self._busy -= 1

    def _take_group(self) -> list[_Request]:
        group: list[_Request] = []
        size = 0
        limit = self._settings.max_group_events
        while self._queue and (not group or size + len(self._queue[0].events) <= limit):
            request = self._queue.popleft()
            group.append(request)
            size += len(request.events)
        return group

    async def _commit_group(self, writer: GroupWriter, group: list[_Request]) -> None:
        try:
            ids = await self._write_and_answer(writer, group)
        finally:
            self.stats.pending_events -= sum(len(r.events) for r in group)
        # After the answers: a request waits for its commit, never for the broker. Until this
        # publish is done the writer takes no new group, which bounds what is unpublished.
        if ids:
            # Each id's task continues the trace of the request that recorded it.
            with tracing.carriers(self._traces.pop(id(group), {})):
                await self._publish_after_commit(ids)

    async def _write_and_answer(self, writer: GroupWriter, group: list[_Request]) -> list[int]:
        """Commit the group and answer its requests; the new ledger ids (none on failure)."""
        batches = [(r.source, r.events) for r in group]
        try:
            results = await writer.write(batches)
        except _UNAVAILABLE as exc:
            self._fail_group(group, exc)
            return []
        except Exception as exc:
            # Not an outage: something in one request the database refused (or a bug). The
            # group rolled back as a whole; each request is written again on its own, so one
            # request's data never fails the others' commit.
            if len(group) > 1:
                return await self._write_alone(writer, group)
            log.warning("ledger write refused for one request (%s)", type(exc).__name__)
            if not group[0].done.done():
                group[0].done.set_exception(exc)
            return []
        self.stats.state["database"] = "ok"
        self.stats.groups += 1
        self.stats.largest_group = max(self.stats.largest_group, len(group))
        for request, result in zip(group, results, strict=True):
            if not request.done.done():
                request.done.set_result(result)
            if request.trace:
                traces = self._traces.setdefault(id(group), {})
                traces.update(dict.fromkeys(result.accepted_ids, request.trace))
        ids = [pk for result in results for pk in result.accepted_ids]
        self.stats.events_committed += len(ids)
        return ids

    async def _write_alone(self, writer: GroupWriter, group: list[_Request]) -> list[int]:
        """Each request of a refused group in its own transaction; the new ids."""
        ids: list[int] = []
        for request in group:
            ids += await self._write_and_answer(writer, [request])
        return ids

    def _fail_group(self, group: list[_Request], exc: Exception) -> None:
        # The transaction rolled back as a whole: nothing of the group is half-written.
        # The type only: driver messages can carry SQL parameters (customer data).
        log.warning(
            "ledger commit failed for %d request(s) (%s); answering 503",
            len(group),
            type(exc).__name__,
        )
        self._database_down_until = time.monotonic() + self._settings.database_cooldown_seconds
        self.stats.state["database"] = "unavailable"
        error = IntakeUnavailableError("database unavailable", self._settings.retry_after_seconds)
        for request in group:
            if not request.done.done():
                request.done.set_exception(error)

    async def _publish_after_commit(self, ids: list[int]) -> None:
        if time.monotonic() < self._broker_down_until:
            self.stats.left_for_sweeper += len(ids)
            return
        try:
            await anyio.to_thread.run_sync(self._publish, ids)
        except Exception as exc:
            # Committed, so safe: the sweeper publishes pending events later. Only the type is
            # logged: broker errors can carry connection URLs with credentials.
            self._broker_down_until = time.monotonic() + self._settings.broker_cooldown_seconds
            self.stats.publish_failures += 1
            self.stats.left_for_sweeper += len(ids)
            self.stats.state["broker"] = "unavailable"
            log.warning(
                "enqueue failed for %d committed event(s) (%s); left pending for the sweeper",
                len(ids),
                type(exc).__name__,
            )
        else:
            self.stats.state["broker"] = "ok"


def build_writers(db: Database, settings: IngestSettings) -> list[GroupWriter]:
    """Async psycopg writers on Postgres; one threaded writer on SQLite (a single writer)."""
    if db.engine.dialect.name == "postgresql" and settings.async_driver:
        url = db.engine.url.render_as_string(hide_password=False)
        return [AsyncPostgresLedger(url) for _ in range(settings.writers)]
    count = 1 if db.engine.dialect.name == "sqlite" else settings.writers
    return [ThreadedWriter(db) for _ in range(count)]
