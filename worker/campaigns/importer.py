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
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import ValidationError
from sqlalchemy import insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.campaigns.models import Campaign, CampaignImportError, CampaignRecipient
from worker.db import utcnow
from worker.inbound.schema import Customer

CUSTOMER_KEYS = ("email", "first_name", "last_name")
ID_KEYS = ("customer_id", "id")
# Rows per INSERT statement: under SQLite's and psycopg's bind-parameter limits.
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
        yield _from_flat(start, dict(zip(header, cells, strict=True)))


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


def _from_flat(line: int, values: dict[str, Any]) -> Row | RowError:
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
    return _checked(line, customer, data)


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
) -> ImportResult:
    """Insert the rows as pending recipients and the errors as import errors, batch by batch.

    A customer already in the campaign (a repeated row) becomes an import error. `on_batch`
    runs after each batch (the CLI commits there). The campaign's totals are updated.
    """
    result = ImportResult()
    batch: list[Row | RowError] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_rows:
            _flush(session, campaign_id, batch, result)
            batch = []
            if on_batch is not None:
                on_batch()
    _flush(session, campaign_id, batch, result)
    return result


def _flush(
    session: Session, campaign_id: int, batch: list[Row | RowError], result: ImportResult
) -> None:
    good = [row for row in batch if isinstance(row, Row)]
    errors = [row for row in batch if isinstance(row, RowError)]
    imported = 0
    for start in range(0, len(good), STATEMENT_ROWS):
        part = good[start : start + STATEMENT_ROWS]
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
