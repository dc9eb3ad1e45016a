"""The CLI's CSV reader (`read_csv_blocks`: runs of one-line records as blocks of cells, COPY
text from a per-header template) gives exactly what the row-by-row reader gives: the same
rows, the same errors at the same lines, the same stored recipients."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from worker.campaigns import importer
from worker.campaigns.importer import (
    Block,
    Row,
    RowError,
    import_rows,
    read_csv,
    read_csv_blocks,
)
from worker.campaigns.models import Campaign, CampaignRecipient
from worker.campaigns.service import import_errors
from worker.db import Database

NAMES = [
    "customer_id",
    "id",
    "email",
    "first_name",
    "last_name",
    "tier",
    "attributes.tier",
    "data.offer",
    "data.",
    "attributes.",
    "",
    "na%me",
    'we"ird,col',
    "back\\slash",
    "ünï 😀",
    " padded ",
]
# Characters that matter to CSV, JSON, COPY or validation, and some that do not.
ALPHABET = [*" ab,;\"'\\\t\r\n%{}éü😀\x7f\x1f\u2028"]
cells = st.one_of(
    st.text(st.sampled_from(ALPHABET), max_size=6),
    st.sampled_from(["", " ", "x" * 255, "x" * 256, "y" * 321, "N\\A", "\\N"]),
    st.text(max_size=4),  # any unicode, NUL and lone surrogates included
)


@st.composite
def csv_files(draw: st.DrawFn, *, storable: bool = False) -> str:
    """A header and rows written by the csv module (so quoted where needed), with blank
    lines, wrong widths and broken lines among them."""
    header = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5))
    if draw(st.booleans()):
        header[draw(st.integers(0, len(header) - 1))] = "customer_id"
    alphabet = cells
    if storable:  # Postgres stores no NUL (an existing limit of both readers alike)
        alphabet = cells.filter(lambda c: "\x00" not in c and _encodable(c))
    out = io.StringIO()
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    writer = csv.writer(out, lineterminator=ending)
    writer.writerow(header)
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 19))
        if kind == 0:
            out.write(ending)  # a blank line
        elif kind == 1:
            out.write(draw(st.sampled_from(['c9,"x"y', '"open,quote', "a\rb", "tail,"])) + ending)
        else:
            width = len(header) + (draw(st.sampled_from([-1, 1])) if kind == 2 else 0)
            row = draw(st.lists(alphabet, min_size=max(width, 0), max_size=max(width, 0)))
            if row and draw(st.booleans()):
                row[0] = f"c{draw(st.integers(0, 6))}"  # repeats happen
            writer.writerow(row)
    return out.getvalue()


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def expanded(items: Iterable[Row | RowError | Block]) -> Iterator[Row | RowError]:
    for item in items:
        if isinstance(item, Block):
            yield from item.rows()
        else:
            yield item


_UNESCAPE = re.compile(r"\\(.)")
_COPY_CHARS = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def copy_rows(text: str | None) -> list[tuple[Any, ...]]:
    """COPY text back into values: (line, customer_id, payload as a dict, the rest)."""
    rows: list[tuple[Any, ...]] = []
    for record in (text or "").split("\n")[:-1]:  # COPY ends each row with LF
        line, ident, payload, campaign, state, _ = (
            _UNESCAPE.sub(lambda m: _COPY_CHARS[m.group(1)], field) for field in record.split("\t")
        )
        rows.append((int(line), ident, json.loads(payload), campaign, state))
    return rows


def prepared(items: list[Row | RowError | Block]) -> tuple[Any, ...]:
    batch = importer._Batch.of(7, items, copying=True)
    copied = batch.copy
    return (
        copy_rows(copied.text if copied else None),
        copied.lines if copied else [],
        copied.ids if copied else [],
        batch.errors,
    )


@settings(max_examples=400, deadline=None)
@given(text=csv_files(), block_lines=st.integers(1, 5))
def test_blocks_read_and_render_exactly_what_read_csv_gives(text: str, block_lines: int) -> None:
    # Given any file, read row by row and read in blocks
    slow = list(read_csv(io.StringIO(text)))
    fast = list(read_csv_blocks(io.StringIO(text), block_lines=block_lines))
    # Then the blocks hold the same rows and errors, line by line
    assert list(expanded(fast)) == slow
    # And their COPY text is the same recipients (payload compared as the JSON value, which
    # is what Postgres stores), the same lines and customer ids, the same errors
    if not all(_encodable(str(row)) for row in slow):
        return  # a lone surrogate: COPY text cannot be sent, by either reader
    assert prepared(fast) == prepared(list(slow))


def test_a_plain_file_comes_in_blocks_and_a_quoted_line_break_row_by_row() -> None:
    text = "customer_id,note\n" + "".join(f"c{n},n{n}\n" for n in range(2, 8))
    text += 'c8,"two\nlines"\nc9,x\n'
    items = list(read_csv_blocks(io.StringIO(text), block_lines=3))
    # Lines 2-4 and 5-7 are blocks; 8-9 hold a record over two lines, so row by row
    assert [(type(i).__name__, getattr(i, "first", getattr(i, "line", None))) for i in items] == [
        ("Block", 2),
        ("Block", 5),
        ("Row", 8),
        ("Row", 10),
    ]


def test_a_header_with_a_repeated_place_is_read_row_by_row() -> None:
    for header in ("customer_id,tier,attributes.tier", "id,customer_id", "customer_id,a,a"):
        text = header + "\n" + "c1,x,y\n" * 3
        assert not any(isinstance(i, Block) for i in read_csv_blocks(io.StringIO(text)))
        assert list(expanded(read_csv_blocks(io.StringIO(text)))) == list(
            read_csv(io.StringIO(text))
        )


def _draft(db: Database) -> int:
    with db.session() as session:
        campaign = Campaign(name="t", event_type="customer.updated", data={}, total=0)
        session.add(campaign)
        session.flush()
        return campaign.id


def _stored(db: Database, campaign_id: int) -> tuple[Any, ...]:
    with db.sessions() as session:
        rows = session.execute(
            select(
                CampaignRecipient.line,
                CampaignRecipient.customer_id,
                CampaignRecipient.payload,
                CampaignRecipient.state,
            )
            .where(CampaignRecipient.campaign_id == campaign_id)
            .order_by(CampaignRecipient.id)
        ).all()
        errors = import_errors(session, campaign_id, limit=1000)
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        totals = (campaign.total, campaign.import_errors)
    return [tuple(r) for r in rows], errors, totals


def _import(db: Database, text: str, *, blocks: bool, batch_rows: int, overlap: bool) -> Any:
    campaign_id = _draft(db)
    rows = (
        read_csv_blocks(io.StringIO(text), block_lines=3) if blocks else read_csv(io.StringIO(text))
    )
    with db.session() as session:
        result = import_rows(
            session,
            campaign_id,
            rows,
            batch_rows=batch_rows,
            on_batch=session.commit,
            overlap=overlap,
        )
    return (result.imported, result.errors, result.first_errors), _stored(db, campaign_id)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=csv_files(storable=True), batch_rows=st.integers(1, 8))
def test_blocks_store_exactly_the_recipients_and_errors_read_csv_stores(
    db: Database, text: str, batch_rows: int
) -> None:
    # Given any storable file, imported row by row, then in blocks as the CLI does
    slow = _import(db, text, blocks=False, batch_rows=batch_rows, overlap=False)
    fast = _import(db, text, blocks=True, batch_rows=batch_rows, overlap=True)
    # Then the same recipients (in the same order), errors and totals are stored
    assert fast == slow


def _big_file(rows: int, bad: dict[int, str]) -> str:
    lines = ["customer_id,email,first_name,tier,data.offer"]
    for n in range(2, rows + 2):
        lines.append(bad.get(n, f"c{n},c{n}@example.com,Name{n},gold,OFFER-{n % 97}"))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("blocks", [False, True], ids=["row by row", "blocks"])
def test_bad_rows_in_the_middle_of_a_large_batch_are_the_same_errors(
    db: Database, blocks: bool
) -> None:
    # Given 6,000 rows in one 10,000-row batch, with bad ones in the middle
    bad = {
        2500: "c2500,c2500@example.com," + "x" * 256 + ",gold,A",
        3001: ",nobody@example.com,No,gold,A",
        3002: "c3002,too,many,fields,here,extra",
        # (near the end: a quote left open reads the rest of the file as one field, and
        # past the csv module's field limit, 128 KiB, the error is that limit's)
        5990: 'c5990,"c5990@example.com,Open,gold,A',
        3500: "c10,again@example.com,Again,gold,A",
        4000: "c4000,c4000@example.com,Nul\x00,gold,A",
    }
    text = _big_file(6000, bad)
    # When it is imported as the CLI does (blocks, a writer thread) or row by row
    (imported, errors, first), (stored, recorded, totals) = _import(
        db, text, blocks=blocks, batch_rows=10_000, overlap=blocks
    )
    # Then every other row is stored and each bad line has its error, by line
    assert recorded == [
        {
            "line": 2500,
            "message": "first_name: Value should have at most 255 items after validation, not 256",
        },
        {"line": 3001, "message": "customer_id: Field required"},
        {"line": 3002, "message": "expected 5 fields, found 6"},
        {"line": 3500, "message": "customer_id 'c10' appears on an earlier line"},
        {
            "line": 4000,
            "message": "first_name: Value error, text must not contain the NUL character",
        },
        {
            "line": 5990,
            "message": "unterminated quoted field: the quote opened on this line never closes",
        },
    ]
    assert (imported, errors) == (5994, 6) == totals
    assert [e.line for e in first] == [2500, 3001, 3002, 3500, 4000, 5990]
    assert len(stored) == 5994
    assert [line for line, *_ in stored] == [n for n in range(2, 6002) if n not in bad]
    assert stored[0] == (
        2,
        "c2",
        {
            "customer": {
                "id": "c2",
                "email": "c2@example.com",
                "first_name": "Name2",
                "attributes": {"tier": "gold"},
            },
            "data": {"offer": "OFFER-2"},
        },
        "pending",
    )
