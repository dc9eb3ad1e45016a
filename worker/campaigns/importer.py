"""Recipients from CSV, JSONL or a JSON list, streamed into SQL in bounded batches.

A malformed row becomes an import error with its line number; every other row is kept.
Memory stays flat whatever the file size: rows are read one at a time (or, by
`read_csv_blocks`, a block of lines at a time) and inserted `batch_rows` at a time, and
nothing else is held.

On Postgres a plain CSV row (one line, every cell plain text within its field's limit) goes
into the COPY text from a template made once from the header, without the row's dicts or
validation; any other row is built and validated one by one, so what is stored and every
error message are the same either way (tests/campaigns/test_import_blocks.py).
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from typing import Any, NamedTuple, TextIO

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
    for item in _read_csv(stream, None):
        assert not isinstance(item, Block)  # no plan, no blocks
        yield item


def read_csv_blocks(stream: TextIO, block_lines: int = 1000) -> Iterator[Row | RowError | Block]:
    """`read_csv`, faster: runs of up to `block_lines` lines that are one row each come as
    a `Block` of their cells, which `import_rows` turns into exactly the rows (and errors)
    `read_csv` gives, and on Postgres writes as COPY text straight from the cells."""
    return _read_csv(stream, block_lines)


def _read_csv(stream: TextIO, block_lines: int | None) -> Iterator[Row | RowError | Block]:
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
    plan = _Plan.of(header, quick) if block_lines else None
    slow_until = 0  # the last line of a run of lines that the row-by-row reader takes
    while True:
        start = lines.begin_record()
        if plan is not None and block_lines and start > slow_until:
            first, taken = lines.take(block_lines)
            if not taken:
                return
            block = Block.read(plan, first, taken)
            if block is not None:
                yield block
                continue
            # A quoted field over several lines, or a CSV error: row by row, as read_csv.
            lines.put_back(taken)
            slow_until = first + len(taken) - 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(start, _csv_problem(exc))
            lines.replay_after_first()
            reader = csv.reader(lines, strict=True)  # a fresh parser state
            continue
        row = _record(start, cells, header, quick)
        if row is not None:
            yield row


def _record(line: int, cells: list[str], header: list[str], quick: bool) -> Row | RowError | None:
    """One CSV record: a row, an error, or nothing (a blank line)."""
    if not cells or cells == [""]:
        return None
    if len(cells) != len(header):
        return RowError(line, f"expected {len(header)} fields, found {len(cells)}")
    return _from_flat(line, dict(zip(header, cells, strict=True)), quick=quick)


# A cell that is not plain text for JSON and COPY: it needs escaping (or is refused).
_UNPLAIN_CELL = re.compile(r'[\x00-\x1f"\\]')
# The same in raw CSV lines, whose line ends are not part of any cell (a CR or LF inside a
# cell comes quoted, and a quote is not plain).
_UNPLAIN_LINE = re.compile(r'[\x00-\x09\x0b\x0c\x0e-\x1f"\\]')
# No customer field is longer than this (`_LIMITS`): a line no longer has no cell longer.
_SHORTEST_LIMIT = 255
# Presence patterns (which cells are empty) whose COPY template is kept, per file.
MAX_TEMPLATES = 256


@dataclass(frozen=True)
class Block:
    """Lines that are one CSV record each, from line `first` on: the cells, not yet rows.

    `plain`: the lines hold no character that JSON or COPY would escape, no lone surrogate,
    and none is longer than the shortest customer field limit (so no cell is either)."""

    plan: _Plan
    first: int
    records: list[list[str]]
    plain: bool

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def read(cls, plan: _Plan, first: int, lines: list[str]) -> Block | None:
        """The lines as a block, or None if a record spans lines or the CSV is unreadable."""
        try:
            records = list(csv.reader(lines, strict=True))
        except csv.Error:
            return None
        # Every record ends at the end of a line: as many records as lines means each
        # record is one line (a blank line is an empty record).
        if len(records) != len(lines):
            return None
        text = "".join(lines)
        plain = (
            _UNPLAIN_LINE.search(text) is None
            and max(map(len, lines)) <= _SHORTEST_LIMIT
            and _plain_text(text)
        )
        return cls(plan, first, records, plain)

    def rows(self) -> Iterator[Row | RowError]:
        """The rows and errors `read_csv` gives for these lines."""
        plan = self.plan
        for line, cells in enumerate(self.records, start=self.first):
            row = _record(line, cells, plan.header, True)
            if row is not None:
                yield row


class _Template(NamedTuple):
    """`fill(pick(cells))`: a row's `line`-less COPY text."""

    fill: Callable[[Any], str]
    pick: Callable[[list[str]], Any]


class _Plan:
    """How a header's cells become a recipient's COPY text, precomputed once per file: one
    %-template per pattern of empty cells, and which cells fill it in which order.

    Only for a header whose columns go to distinct places (no column repeated, not both id
    and customer_id) and that `read_csv` checks quickly; otherwise every row takes the
    row-by-row path."""

    def __init__(self, header: list[str], targets: list[tuple[str, str]]) -> None:
        self.header = header
        self.width = len(header)
        self.id_at = next(i for i, (section, _) in enumerate(targets) if section == "id")
        self.limits = [
            (i, _LIMITS[name])
            for i, (section, name) in enumerate(targets)
            if section in ("id", "customer")
        ]
        self._targets = targets
        self._templates: dict[tuple[bool, ...], _Template] = {}
        self.full = self._template((True,) * self.width)

    @classmethod
    def of(cls, header: list[str], quick: bool) -> _Plan | None:
        if not quick:
            return None
        targets = [_target(name) for name in header]
        if len(set(targets)) != len(targets) or sum(s == "id" for s, _ in targets) != 1:
            return None
        return cls(header, targets)

    def template(self, cells: list[str]) -> _Template | None:
        """The template for this row's empty cells, or None (the row-by-row path decides)."""
        present = tuple(map(bool, cells))
        template = self._templates.get(present)
        if template is None and len(self._templates) < MAX_TEMPLATES and present[self.id_at]:
            template = self._template(present)
        return template

    def _template(self, present: tuple[bool, ...]) -> _Template:
        parts: dict[str, list[tuple[str, int]]] = {"customer": [], "attributes": [], "data": []}
        for i, (section, name) in enumerate(self._targets):
            if present[i] and section != "id":
                parts[section].append((f'{_copy_json_key(name)}:"%s"', i))
        customer = [('"id":"%s"', self.id_at), *parts["customer"]]
        text = (
            '%s\t{"customer":{'
            + ",".join(p for p, _ in customer)
            + (',"attributes":{')
            + ",".join(p for p, _ in parts["attributes"])
            + '}},"data":{'
            + ",".join(p for p, _ in parts["data"])
            + "}}"
        )
        order = [self.id_at] + [
            i for section in (customer, parts["attributes"], parts["data"]) for _, i in section
        ]
        template = _Template(text.__mod__, itemgetter(*order))
        self._templates[present] = template
        return template

    def render(self, block: Block, out: _CopyRows) -> list[RowError]:
        """Append the block's rows to `out` as COPY text; its errors are returned.

        A row of plain cells with its fields within their limits is written from a template
        (what `read_csv` would store for it, without the dicts); any other row goes the
        row-by-row way, so its errors are exactly `read_csv`'s."""
        errors: list[RowError] = []
        bodies, lines, ids = out.bodies, out.lines, out.ids
        width, id_at = self.width, self.id_at
        fill, pick = self.full
        line = block.first - 1
        for cells in block.records:
            line += 1
            if block.plain and len(cells) == width and "" not in cells:
                bodies.append(f"{line}\t{fill(pick(cells))}")
                lines.append(line)
                ids.append(cells[id_at])
                continue
            template = self._fits(cells, block.plain)
            if template is not None:
                bodies.append(f"{line}\t{template.fill(template.pick(cells))}")
                lines.append(line)
                ids.append(cells[id_at])
                continue
            row = _record(line, cells, self.header, True)
            if isinstance(row, Row):
                out.add(row)
            elif row is not None:
                errors.append(row)
        return errors

    def _fits(self, cells: list[str], plain: bool) -> _Template | None:
        """The template for a row that needs no validation beyond this check, else None."""
        if len(cells) != self.width:
            return None
        if not plain:
            if _UNPLAIN_CELL.search("".join(cells)) or not _plain_text("".join(cells)):
                return None
            if any(len(cells[i]) > limit for i, limit in self.limits):
                return None
        return self.template(cells)


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

    def take(self, count: int) -> tuple[int, list[str]]:
        """Between records: up to `count` lines at once, and the first one's number."""
        self.begin_record()
        first = self._consumed + 1
        taken: list[str] = []
        while self._again and len(taken) < count:
            taken.append(self._again.popleft())
        taken += itertools.islice(self._source, count - len(taken))
        self._consumed += len(taken)
        return first, taken

    def put_back(self, taken: list[str]) -> None:
        """Undo `take`: the lines are read again, by `__next__`."""
        self._again.extendleft(reversed(taken))
        self._consumed -= len(taken)


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
        section, name = _target(key)
        if section == "id":
            customer["id"] = str(value)
        elif section == "customer":
            customer[name] = value
        elif section == "data":
            data[name] = value
        else:
            customer["attributes"][name] = value
    if quick and _plainly_valid(customer):
        return Row(line, customer, data)
    return _checked(line, customer, data)


def _target(key: str) -> tuple[str, str]:
    """Where a flat key's value goes: ("id", "id"), ("customer", field), ("data", key) or
    ("attributes", key)."""
    if key in ID_KEYS:
        return "id", "id"
    if key in CUSTOMER_KEYS:
        return "customer", key
    if key.startswith("data."):
        return "data", key[5:]
    return "attributes", key.removeprefix("attributes.")


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
    rows: Iterable[Row | RowError | Block],
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
    two batches are in memory. A `Block` (from `read_csv_blocks`) counts as its lines.
    """
    result = ImportResult()
    copying = copy and session.get_bind().dialect.name == "postgresql"
    with _Writer(overlap) as writer:
        batch: list[Row | RowError | Block] = []
        size = 0
        for row in rows:
            batch.append(row)
            size += len(row) if isinstance(row, Block) else 1
            if size >= batch_rows:
                prepared = _Batch.of(campaign_id, batch, copying)
                writer.submit(partial(_write, session, campaign_id, prepared, result, on_batch))
                batch, size = [], 0
        writer.drain()
    _write(session, campaign_id, _Batch.of(campaign_id, batch, copying), result, None)
    return result


@dataclass
class _CopyRows:
    """Rows as COPY text without the columns every row of a batch shares, in line order:
    `line \\t customer_id \\t payload`; with their lines and customer ids."""

    bodies: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        ident = str(row.customer["id"])
        payload = _dumps({"customer": row.customer, "data": row.data})
        # JSON text holds no raw control characters; only its backslashes need escaping.
        self.bodies.append(
            f"{row.line}\t{ident.translate(_COPY_ESCAPES)}\t"
            f"{payload.replace(BACKSLASH, BACKSLASH * 2)}"
        )
        self.lines.append(row.line)
        self.ids.append(ident)

    def text(self, campaign_id: int) -> str:
        """The COPY text (columns `_COPY_COLUMNS`)."""
        tail = f"\t{campaign_id}\tpending\t{utcnow().isoformat()}\n"
        return tail.join(self.bodies) + tail


@dataclass
class _Batch:
    """A batch read and prepared (the COPY text built) before any database work."""

    good: list[Row]  # when not by COPY
    errors: list[RowError]
    copy: _CopyBatch | None  # None: not by COPY

    @classmethod
    def of(cls, campaign_id: int, batch: list[Row | RowError | Block], copying: bool) -> _Batch:
        good: list[Row] = []
        errors: list[RowError] = []
        rows = _CopyRows()
        for item in batch:
            if isinstance(item, Block):
                if copying:
                    errors += item.plan.render(item, rows)
                    continue
                for row in item.rows():
                    if isinstance(row, Row):
                        good.append(row)
                    else:
                        errors.append(row)
            elif isinstance(item, RowError):
                errors.append(item)
            elif copying:
                rows.add(item)
            else:
                good.append(item)
        copied = _CopyBatch(rows.text(campaign_id), rows.lines, rows.ids) if rows.bodies else None
        return cls(good, errors, copied)


@dataclass(frozen=True)
class _CopyBatch:
    text: str
    lines: list[int]
    ids: list[str]


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
    imported = 0
    if batch.copy is not None:
        # COPY has no bind-parameter limit: on Postgres the whole batch is one statement.
        inserted = _copy_insert(session, batch.copy.text)
        if inserted is None:
            imported = len(batch.copy.lines)
        else:
            imported = len(inserted)
            errors.extend(
                RowError(line, _repeated(ident))
                for line, ident in zip(batch.copy.lines, batch.copy.ids, strict=True)
                if line not in inserted
            )
    for start in range(0, len(batch.good), STATEMENT_ROWS):
        part = batch.good[start : start + STATEMENT_ROWS]
        lines = _insert(session, campaign_id, part)
        errors.extend(
            RowError(row.line, _repeated(row.customer["id"]))
            for row in part
            if row.line not in lines
        )
        imported += len(lines)
    result.imported += imported
    _record_errors(session, campaign_id, errors, result)
    if imported:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(total=Campaign.total + imported)
        )


def _repeated(customer_id: str) -> str:
    return f"customer_id {customer_id!r} appears on an earlier line"


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
# The columns each row has of its own first, then those every row of a batch shares.
_COPY_COLUMNS = "(line, customer_id, payload, campaign_id, state, updated_at)"
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
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _copy_json_key(name: str) -> str:
    """A JSON object key as it stands in a COPY %-template."""
    return _dumps(name).translate(_COPY_ESCAPES).replace("%", "%%")


def _copy_insert(session: Session, data: str) -> set[int] | None:
    """Insert the rows (`data`: COPY text): all of them by COPY (None), or the lines of
    those new to the campaign."""
    connection = session.connection()
    try:
        with connection.begin_nested():
            _copy(connection, "campaign_recipients", data)
        return None
    except IntegrityError:
        pass
    connection.execute(_CREATE_STAGE)
    connection.execute(_TRUNCATE_STAGE)
    _copy(connection, STAGE, data)
    return set(connection.execute(_MERGE_STAGE).scalars())


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
