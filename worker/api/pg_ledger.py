"""The receiver's Postgres writer: the group insert on an async psycopg connection.

Why not the SQLAlchemy session in a worker thread: under load the event loop holds the GIL
while it parses requests, and a thread coming back from each database round trip waits up
to the interpreter's switch interval (5 ms) for it. Four round trips per group turned a 1 ms
commit into 5-10 ms. On the event loop itself the same transaction costs what the database
costs. Each writer owns one connection, reopened after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import psycopg
from sqlalchemy.engine import make_url

from worker.inbound.ledger import UNNEST_INSERT_SQL, GroupPlan, RecordResult, unnest_params
from worker.inbound.schema import CanonicalEvent


class DatabaseUnavailableError(Exception):
    """The connection failed or was lost; the transaction did not commit."""


def conninfo(database_url: str) -> str:
    """A libpq URI for a SQLAlchemy `postgresql[+driver]://` URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


# SQLSTATE classes of a statement refused for its data, on a healthy connection: data
# exception (22), integrity (23), program limit exceeded (54, e.g. nesting too deep).
_DATA_CLASSES = ("22", "23", "54")


def _refused_data(exc: psycopg.Error) -> bool:
    state = exc.sqlstate or ""
    return state[:2] in _DATA_CLASSES


class AsyncPostgresLedger:
    """One connection; `write` records a group of batches in one transaction."""

    def __init__(self, database_url: str, *, connect_timeout: float = 5.0) -> None:
        self._conninfo = conninfo(database_url)
        self._connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def write(
        self, batches: Sequence[tuple[str, Sequence[CanonicalEvent]]]
    ) -> list[RecordResult]:
        plan = GroupPlan(batches)
        try:
            conn = await self._connection()
            chunks = list(plan.chunks())
            if len(chunks) == 1:
                # One statement in autocommit is its own transaction: one round trip, where
                # BEGIN / INSERT / COMMIT would take three.
                await self._insert(conn, plan, chunks[0])
            else:
                async with conn.transaction():
                    for chunk in chunks:
                        await self._insert(conn, plan, chunk)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if _refused_data(exc):
                # The server refused this data (a value, a limit): not an outage, and the
                # connection is still good; the intake writes the requests one by one.
                raise
            await self.close()
            # The type only: libpq messages can name hosts and users.
            raise DatabaseUnavailableError(type(exc).__name__) from None
        return plan.results()

    @staticmethod
    async def _insert(
        conn: psycopg.AsyncConnection[tuple[object, ...]],
        plan: GroupPlan,
        chunk: Sequence[tuple[str, CanonicalEvent]],
    ) -> None:
        cursor = await conn.execute(UNNEST_INSERT_SQL, unnest_params(chunk), prepare=True)
        rows = await cursor.fetchall()
        plan.accept((int(str(r[0])), str(r[1]), str(r[2])) for r in rows)

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A connection belongs to the loop that opened it (e.g. an earlier test client's).
            self._conn, self._loop = None, loop
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                connect_timeout=max(1, round(self._connect_timeout)),
                autocommit=True,
            )
        return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
