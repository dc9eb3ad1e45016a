"""Recipients from CSV, JSONL or a JSON list, streamed into SQL in bounded batches.

A malformed row becomes an import error with its line number; every other row is kept.
Memory stays flat whatever the file size: rows are read one at a time and inserted
`batch_rows` at a time, and nothing else is held.
"""

from __future__ import annotations

import csv
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO

import psycopg
from pydantic import ValidationError
from sqlalchemy import Connection, insert, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.bounds import MAX_NODES
from worker.campaigns.models import Campaign, CampaignImportError, CampaignRecipient
from worker.db import utcnow
from worker.inbound.schema import Customer

CUSTOMER_KEYS = ("email", "first_name", "last_name")
ID_KEYS = ("customer_id", "id")
# Rows per INSERT statement on SQLite: under its bind-parameter limit.
STATEMENT_ROWS = 1000
MAX_MESSAGE = 500


@dataclass(frozen=True)
class Row:
    """One recipient: its line in the source and the event's customer and data."""

    line: int
    customer: dict[str, Any]
    data: dict[str, Any]


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


@dataclass
class ImportResult:
    imported: int = 0
    errors: int = 0
    first_errors: list[RowError] = field(default_factory=list)


class FileError(RowError):
    """A problem with the whole file (empty, no header, no id column): nothing to import."""


def read_csv(stream: TextIO) -> Iterator[Row | RowError]:
    """A header row, then one recipient per row: customer_id (or id), email, first_name,
    last_name; `data.<key>` columns go to the event's data, every other column to
    customer.attributes. Empty cells are left out.

    A row is reported at the line where it starts (a quoted field may span lines). A quote
    that never closes is reported at the line where it opened, and the lines after it are
    read again as rows of their own, so one stray quote costs one row, not the rest.
    """
    lines = _Lines(stream)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        yield FileError(1, "the file is empty")
        return
    except csv.Error as exc:
        yield FileError(1, f"unreadable header row ({exc})")
        return
    header = [name.strip() for name in header]
    if not any(name in ID_KEYS for name in header):
        yield FileError(1, "the header has no customer_id column")
        return
    quick = _plain_text("".join(header)) and len(header) < MAX_NODES
    while True:
        start = lines.begin_record()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(start, _csv_problem(exc))
            lines.replay_after_first()
            reader = csv.reader(lines, strict=True)  # a fresh parser state
            continue
        if not cells or cells == [""]:
            continue
        if len(cells) != len(header):
            yield RowError(start, f"expected {len(header)} fields, found {len(cells)}")
            continue
        yield _from_flat(start, dict(zip(header, cells, strict=True)), quick=quick)


def _csv_problem(exc: csv.Error) -> str:
    if "unexpected end of data" in str(exc):
        return "unterminated quoted field: the quote opened on this line never closes"
    return f"unreadable CSV: {exc}"


class _Lines:
    """The stream's lines for the csv module, numbered, remembering the current record's
    lines so that they can be read again after a quote that never closed."""

    def __init__(self, stream: TextIO) -> None:
        self._source = iter(stream)
        self._again: deque[str] = deque()
        self._record: list[str] = []
        self._consumed = 0  # lines handed out for good (not to be read again)

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._again.popleft() if self._again else next(self._source)
        self._record.append(line)
        return line

    def begin_record(self) -> int:
        """A record starts: the line number it starts on."""
        self._consumed += len(self._record)
        self._record = []
        return self._consumed + 1

    def replay_after_first(self) -> None:
        """The record's first line is spent; its other lines are read again."""
        rest = self._record[1:]
        self._again.extendleft(reversed(rest))
        self._record = self._record[:1]


def read_jsonl(stream: TextIO) -> Iterator[Row | RowError]:
    """One JSON object per line (see `from_object`); blank lines are skipped."""
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RowError(number, f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        yield from_object(number, item)


def read_items(items: Iterable[Any]) -> Iterator[Row | RowError]:
    """A JSON list (the API): item n is reported as line n (from 1)."""
    for number, item in enumerate(items, start=1):
        yield from_object(number, item)


def from_object(line: int, item: Any) -> Row | RowError:
    """{"customer": {...}, "data": {...}} or a flat {"customer_id": ..., "email": ...,
    "attributes": {...}, "data": {...}} object."""
    if not isinstance(item, dict):
        return RowError(line, "expected a JSON object")
    data = item.get("data", {})
    if not isinstance(data, dict):
        return RowError(line, "data must be an object")
    if "customer" in item:
        return _checked(line, item["customer"], data)
    flat = {k: v for k, v in item.items() if k not in ("data", "attributes")}
    attributes = item.get("attributes", {})
    if not isinstance(attributes, dict):
        return RowError(line, "attributes must be an object")
    row = _from_flat(line, flat)
    if isinstance(row, RowError):
        return row
    customer = {**row.customer, "attributes": {**row.customer["attributes"], **attributes}}
    return _checked(line, customer, data)


def _from_flat(line: int, values: dict[str, Any], *, quick: bool = False) -> Row | RowError:
    customer: dict[str, Any] = {"attributes": {}}
    data: dict[str, Any] = {}
    for key, value in values.items():
        if value == "" or value is None:
            continue
        if key in ID_KEYS:
            customer["id"] = str(value)
        elif key in CUSTOMER_KEYS:
            customer[key] = value
        elif key.startswith("data."):
            data[key[5:]] = value
        else:
            customer["attributes"][key.removeprefix("attributes.")] = value
    if quick and _plainly_valid(customer):
        return Row(line, customer, data)
    return _checked(line, customer, data)


# The customer fields' length limits (worker.inbound.schema.Customer).
_LIMITS = {"id": 255, "email": 320, "first_name": 255, "last_name": 255}


def _plainly_valid(customer: dict[str, Any]) -> bool:
    """True only for a customer of CSV text that `Customer` accepts and returns unchanged:
    an id, every field within its length, no NUL, valid unicode. Anything else (and so any
    row with a problem) is validated by pydantic, which names the problem. A CSV import
    spends most of its time in validation; this check costs a few C calls per row."""
    ident = customer.get("id")
    if ident is None or len(ident) > _LIMITS["id"]:
        return False
    texts = [ident]
    for key in ("email", "first_name", "last_name"):
        value = customer.get(key)
        if value is not None:
            if len(value) > _LIMITS[key]:
                return False
            texts.append(value)
    attributes = customer["attributes"]
    texts += attributes
    texts += attributes.values()
    return _plain_text("".join(texts))


def _plain_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _checked(line: int, customer: Any, data: dict[str, Any]) -> Row | RowError:
    try:
        parsed = Customer.model_validate(customer)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "customer"
        # The message only: the value may be customer data.
        return RowError(line, f"{_field_name(where)}: {first['msg']}")
    return Row(line, parsed.model_dump(exclude_none=True), data)


def _field_name(where: str) -> str:
    return "customer_id" if where == "id" else where


def import_rows(
    session: Session,
    campaign_id: int,
    rows: Iterable[Row | RowError],
    *,
    batch_rows: int,
    on_batch: Callable[[], None] | None = None,
    copy: bool = True,
    overlap: bool = False,
) -> ImportResult:
    """Insert the rows as pending recipients and the errors as import errors, batch by batch.

    A customer already in the campaign (a repeated row) becomes an import error. `on_batch`
    runs after each batch (the CLI commits there). The campaign's totals are updated. On
    Postgres a batch goes in by COPY unless `copy` is false (then, as on SQLite, by multi-row
    INSERTs; the import benchmark compares the two). With `overlap` (the CLI) a batch is
    written (and `on_batch` run) by a second thread while this one reads and prepares the
    next: the database's work on one batch overlaps the parsing of the next, and at most
    two batches are in memory.
    """
    result = ImportResult()
    copying = copy and session.get_bind().dialect.name == "postgresql"
    with _Writer(overlap) as writer:
        batch: list[Row | RowError] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_rows:
                prepared = _Batch.of(campaign_id, batch, copying)
                writer.submit(partial(_write, session, campaign_id, prepared, result, on_batch))
                batch = []
        writer.drain()
    _write(session, campaign_id, _Batch.of(campaign_id, batch, copying), result, None)
    return result


@dataclass
class _Batch:
    """A batch read and prepared (the COPY text built) before any database work."""

    good: list[Row]
    errors: list[RowError]
    copy_text: str | None  # None: not by COPY

    @classmethod
    def of(cls, campaign_id: int, batch: list[Row | RowError], copying: bool) -> _Batch:
        good = [row for row in batch if isinstance(row, Row)]
        errors = [row for row in batch if isinstance(row, RowError)]
        return cls(good, errors, _copy_text(campaign_id, good) if copying and good else None)


def _write(
    session: Session,
    campaign_id: int,
    batch: _Batch,
    result: ImportResult,
    on_batch: Callable[[], None] | None,
) -> None:
    _flush(session, campaign_id, batch, result)
    if on_batch is not None:
        on_batch()


class _Writer:
    """Runs each batch's database work here, or (overlap) on one thread of its own, one
    batch at a time: a batch is submitted only after the previous one is written, and the
    first error of a write is raised in the reading thread."""

    def __init__(self, overlap: bool) -> None:
        self._pool = ThreadPoolExecutor(1, "passsync-import") if overlap else None
        self._pending: Future[None] | None = None

    def submit(self, work: Callable[[], None]) -> None:
        if self._pool is None:
            work()
            return
        self.drain()
        self._pending = self._pool.submit(work)

    def drain(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # never leave a write running on the session


def _flush(session: Session, campaign_id: int, batch: _Batch, result: ImportResult) -> None:
    errors = list(batch.errors)
    good = batch.good
    imported = 0
    # COPY has no bind-parameter limit: on Postgres the whole batch is one statement.
    copy = batch.copy_text is not None
    step = max(len(good), 1) if copy else STATEMENT_ROWS
    for start in range(0, len(good), step):
        part = good[start : start + step]
        if copy:
            inserted = _copy_insert(session, part, batch.copy_text or "")
        else:
            inserted = _insert(session, campaign_id, part)
        errors.extend(
            RowError(row.line, f"customer_id {row.customer['id']!r} appears on an earlier line")
            for row in part
            if row.line not in inserted
        )
        imported += len(inserted)
    result.imported += imported
    _record_errors(session, campaign_id, errors, result)
    if imported:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(total=Campaign.total + imported)
        )


def _insert(session: Session, campaign_id: int, rows: list[Row]) -> set[int]:
    if not rows:
        return set()
    now = utcnow()
    values = [
        {
            "campaign_id": campaign_id,
            "line": row.line,
            "customer_id": row.customer["id"],
            "payload": {"customer": row.customer, "data": row.data},
            "state": "pending",
            "updated_at": now,
        }
        for row in rows
    ]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # One cached statement executed for many parameter sets: SQLAlchemy batches them into
    # multi-row INSERTs itself ("insertmanyvalues"), where a literal multi-row VALUES would
    # be compiled anew for every batch (most of the import's time).
    table = CampaignRecipient.__table__
    stmt = (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=["campaign_id", "customer_id"])
        .returning(table.c.line)
    )
    return set(session.connection().execute(stmt, values).scalars())


# Postgres: COPY straight into the table (no per-row statement, no bind-parameter limit).
# A customer already in the campaign makes COPY fail as a whole: that batch is rolled back to
# its savepoint and goes through a staging table and one INSERT ... SELECT that skips such
# customers (the earlier line wins, also within the batch). Repeats are rare, so most batches
# take the direct path.
STAGE = "passsync_import_stage"
_COPY_COLUMNS = "(campaign_id, line, customer_id, payload, state, updated_at)"
_CREATE_STAGE = sql_text(
    "CREATE TEMP TABLE IF NOT EXISTS passsync_import_stage"
    " (campaign_id bigint, line integer, customer_id text, payload jsonb, state text,"
    " updated_at timestamptz)"
)
_TRUNCATE_STAGE = sql_text("TRUNCATE passsync_import_stage")
_MERGE_STAGE = sql_text(
    "INSERT INTO campaign_recipients (campaign_id, line, customer_id, payload, state,"
    " updated_at) SELECT campaign_id, line, customer_id, payload, state, updated_at"
    " FROM passsync_import_stage ORDER BY line"
    " ON CONFLICT (campaign_id, customer_id) DO NOTHING RETURNING line"
)
# COPY's text format: backslash, tab, newline and carriage return are escaped.
BACKSLASH = "\\"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_insert(session: Session, rows: list[Row], data: str) -> set[int]:
    """The lines inserted (`data`: the rows as COPY text): all of them by COPY, or those new
    to the campaign."""
    connection = session.connection()
    try:
        with connection.begin_nested():
            _copy(connection, "campaign_recipients", data)
        return {row.line for row in rows}
    except IntegrityError:
        pass
    connection.execute(_CREATE_STAGE)
    connection.execute(_TRUNCATE_STAGE)
    _copy(connection, STAGE, data)
    return set(connection.execute(_MERGE_STAGE).scalars())


def _copy_text(campaign_id: int, rows: list[Row]) -> str:
    now = utcnow().isoformat()
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    # JSON text holds no raw control characters; only its backslashes need escaping.
    return "".join(
        f"{campaign_id}\t{row.line}\t{str(row.customer['id']).translate(_COPY_ESCAPES)}\t"
        f"{dumps({'customer': row.customer, 'data': row.data}).replace(BACKSLASH, BACKSLASH * 2)}"
        f"\tpending\t{now}\n"
        for row in rows
    )


def _copy(connection: Connection, table: str, data: str) -> None:
    dbapi = connection.connection.driver_connection
    assert isinstance(dbapi, psycopg.Connection)
    try:
        with (
            dbapi.cursor() as cursor,
            cursor.copy(f"COPY {table} {_COPY_COLUMNS} FROM STDIN") as copy,
        ):
            copy.write(data)
    except psycopg.errors.UniqueViolation as exc:
        raise IntegrityError("COPY", None, exc) from None


def _record_errors(
    session: Session, campaign_id: int, errors: list[RowError], result: ImportResult
) -> None:
    if not errors:
        return
    errors.sort(key=lambda e: e.line)
    session.execute(
        insert(CampaignImportError),
        [
            {"campaign_id": campaign_id, "line": e.line, "message": e.message[:MAX_MESSAGE]}
            for e in errors
        ],
    )
    result.errors += len(errors)
    room = 20 - len(result.first_errors)
    result.first_errors.extend(errors[: max(room, 0)])
    session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(import_errors=Campaign.import_errors + len(errors))
    )
