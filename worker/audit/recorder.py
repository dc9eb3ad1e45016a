"""The provider client's `on_attempt` hook: one audit row per HTTP attempt, on whose behalf.

Write policy and what it guarantees:

- Postgres (and any backend but SQLite): each row is written as soon as its attempt ends, in a
  transaction of its own on a separate pooled connection, so it is durable whatever the
  event's transaction does next. A hard crash loses at most the rows of attempts whose hook
  had not yet run. A write that fails inside a `batch()` is kept and retried at its end.
- SQLite: the event's transaction holds the database's only write lock (BEGIN IMMEDIATE) while
  it calls the provider, so a second connection could not write until it ends. Inside a
  `batch()` rows are therefore kept in memory and written in one short transaction when the
  batch ends, after the event's transaction has committed or rolled back (the edge opens the
  batch outside the session). A rollback loses nothing; a hard crash (SIGKILL, power loss)
  during the batch loses the rows of that batch — at most one event's calls per process.
- A batch opened with `hold=True` keeps its rows in memory on every backend and writes them
  in one transaction when it ends: the sync engine's group path (worker.sync.group) holds a
  whole commit group's rows, written after its record transaction. A hard crash during such
  a batch loses that group's rows (at most `DISPATCH_CHUNK` events' calls per process).
- Outside any batch, rows are written at once on every backend: the caller must not then hold
  a SQLite write transaction in the same thread.
- If the final write fails (database unreachable), the rows are dropped and the count is
  logged; an audit failure never changes the outcome of the provider call or the event.

Rows hold the call's action, method, path template, status, timing, attempt, outcome, the
pass reference and the actor; the client's CallRecord carries no header, body or key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from worker.audit import models as m
from worker.audit.actor import current_actor
from worker.audit.store import write_entries
from worker.db import Database, utcnow
from worker.observability import metrics, tracing

log = logging.getLogger("passsync.audit")


class AttemptRecord(Protocol):
    """What the recorder reads from a client's per-attempt record (CallRecord fits)."""

    @property
    def action(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def attempt(self) -> int: ...
    @property
    def outcome(self) -> str: ...


class AuditRecorder:
    """Turns attempt records into audit rows; see the module docstring for the guarantees."""

    def __init__(self, db: Database, *, provider: str, buffered: bool | None = None) -> None:
        self._db = db
        self._provider = provider
        self._buffered = db.is_sqlite if buffered is None else buffered
        # Per recorder and per context: threads and tasks never share a buffer.
        self._pending: ContextVar[list[dict[str, Any]] | None] = ContextVar(
            f"passsync_audit_pending_{id(self)}", default=None
        )
        self._holding: ContextVar[bool] = ContextVar(
            f"passsync_audit_holding_{id(self)}", default=False
        )

    def hook(self, account: str) -> Callable[[AttemptRecord], None]:
        """An `on_attempt` hook for another account's client: its rows carry that account
        (buffered and written together with this recorder's)."""

        def on_attempt(record: AttemptRecord) -> None:
            self._take(record, account)

        return on_attempt

    def on_attempt(self, record: AttemptRecord) -> None:
        """The client hook: build the row now (actor, time), write or keep it per the policy."""
        self._take(record, self._provider)

    def _take(self, record: AttemptRecord, account: str) -> None:
        metrics.provider_call(account, record.action, record.status, record.duration_ms / 1000)
        tracing.record_attempt(
            record.action, record.method, record.status, str(record.outcome), record.duration_ms
        )
        row = self.row_for(record, account=account)
        pending = self._pending.get()
        if pending is not None and (self._buffered or self._holding.get()):
            pending.append(row)
            return
        try:
            write_entries(self._db, [row])
        except Exception as exc:
            if pending is None:
                log.warning("audit: 1 row lost (%s)", type(exc).__name__)
                return
            pending.append(row)  # retried when the batch ends

    @contextmanager
    def batch(self, *, hold: bool = False) -> Iterator[None]:
        """Hold rows (SQLite; with `hold`, every backend) until the block ends, then write
        them, even when it raises.

        Open it outside the database session whose transaction spans the provider calls.
        Nested batches join the outermost one (threads join it through a copied context).
        """
        if self._pending.get() is not None:
            yield
            return
        pending: list[dict[str, Any]] = []
        token = self._pending.set(pending)
        holding = self._holding.set(hold)
        try:
            yield
        finally:
            self._holding.reset(holding)
            self._pending.reset(token)
            self._flush(pending)

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        try:
            write_entries(self._db, rows)
        except Exception as exc:
            log.error("audit: %d rows lost (%s)", len(rows), type(exc).__name__)

    def row_for(self, record: AttemptRecord, *, account: str | None = None) -> dict[str, Any]:
        """The AuditEntry column values for one attempt, clipped to the column sizes; the
        `provider` column holds the account (this recorder's unless `account` is given)."""
        actor = current_actor()
        pass_ref = getattr(record, "pass_ref", None)
        return {
            "at": utcnow(),
            "provider": (account or self._provider)[: m.PROVIDER_LEN],
            "action": record.action[: m.ACTION_LEN],
            "method": record.method[: m.METHOD_LEN],
            "path": record.path[: m.PATH_LEN],
            "pass_ref": None if pass_ref is None else str(pass_ref)[: m.PASS_REF_LEN],
            "status": record.status,
            "duration_ms": round(float(record.duration_ms), 3),
            "attempt": record.attempt,
            "outcome": str(record.outcome)[: m.OUTCOME_LEN],
            "actor_kind": actor.kind[: m.ACTOR_KIND_LEN],
            "actor_id": actor.id[: m.ACTOR_ID_LEN],
        }
