"""File import: malformed rows are reported by line and the rest kept; memory stays flat."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from worker.campaigns.importer import (
    FileError,
    Row,
    RowError,
    import_rows,
    read_csv,
    read_items,
    read_jsonl,
)
from worker.campaigns.models import Campaign, CampaignRecipient
from worker.campaigns.service import import_errors
from worker.db import Database


def draft(db: Database) -> int:
    with db.session() as session:
        campaign = Campaign(name="t", event_type="customer.updated", data={}, total=0)
        session.add(campaign)
        session.flush()
        return campaign.id


def test_a_malformed_csv_row_is_reported_with_its_line_and_the_rest_is_imported(
    db: Database,
) -> None:
    # Given a CSV whose line 3 has a field too many and line 5 has no customer id
    text = (
        "customer_id,email,tier,data.offer\n"
        "c1,a@example.com,gold,SPRING\n"
        "c2,b@example.com,silver,X,extra\n"
        "c3,,bronze,\n"
        ",d@example.com,gold,Y\n"
        "c1,again@example.com,gold,Z\n"
        "c6,f@example.com,,\n"
    )
    campaign_id = draft(db)
    # When it is imported
    with db.session() as session:
        result = import_rows(session, campaign_id, read_csv(io.StringIO(text)), batch_rows=2)
    # Then the three good rows are recipients and each bad line is reported by number
    assert (result.imported, result.errors) == (3, 3)
    with db.sessions() as session:
        rows = session.execute(
            select(CampaignRecipient.line, CampaignRecipient.payload).order_by(
                CampaignRecipient.line
            )
        ).all()
        errors = import_errors(session, campaign_id, limit=10)
        campaign = session.get(Campaign, campaign_id)
    assert [line for line, _ in rows] == [2, 4, 7]
    assert rows[0][1] == {
        "customer": {"id": "c1", "email": "a@example.com", "attributes": {"tier": "gold"}},
        "data": {"offer": "SPRING"},
    }
    assert errors == [
        {"line": 3, "message": "expected 4 fields, found 5"},
        {"line": 5, "message": "customer_id: Field required"},
        {"line": 6, "message": "customer_id 'c1' appears on an earlier line"},
    ]
    assert campaign is not None and (campaign.total, campaign.import_errors) == (3, 3)


def test_a_csv_without_a_customer_id_column_is_refused_as_a_whole() -> None:
    assert list(read_csv(io.StringIO("email\na@b.c\n"))) == [
        FileError(1, "the header has no customer_id column")
    ]


def test_an_empty_csv_is_a_file_error() -> None:
    assert list(read_csv(io.StringIO(""))) == [FileError(1, "the file is empty")]


def test_an_unterminated_quote_is_reported_where_it_opened_and_later_lines_are_kept() -> None:
    # Given a quote on line 6 that never closes, and good rows after it
    text = "customer_id,email\n" + "".join(f"c{n},c{n}@example.com\n" for n in range(2, 6))
    text += 'c6,"c6@example.com\nc7,c7@example.com\nc8,c8@example.com\n'
    # When it is read
    rows = list(read_csv(io.StringIO(text)))
    # Then line 6 is the error, and lines 7 and 8 are rows of their own
    assert [r for r in rows if isinstance(r, RowError)] == [
        RowError(6, "unterminated quoted field: the quote opened on this line never closes")
    ]
    assert [(r.line, r.customer["id"]) for r in rows if isinstance(r, Row)] == [
        (2, "c2"),
        (3, "c3"),
        (4, "c4"),
        (5, "c5"),
        (7, "c7"),
        (8, "c8"),
    ]


def test_a_quoted_field_over_two_lines_is_one_row_at_its_first_line() -> None:
    text = 'customer_id,note\nc1,"two\nlines"\nc2,"x"y\nc3,z\n'
    rows = list(read_csv(io.StringIO(text)))
    assert rows == [
        Row(2, {"id": "c1", "attributes": {"note": "two\nlines"}}, {}),
        RowError(4, "unreadable CSV: ',' expected after '\"'"),
        Row(5, {"id": "c3", "attributes": {"note": "z"}}, {}),
    ]


def test_jsonl_lines_and_api_items_are_checked_one_by_one() -> None:
    # Given JSONL with a broken line, a non-object and a nested customer
    text = (
        '{"customer_id": "c1", "first_name": "Ada", "attributes": {"tier": "gold"}}\n'
        "{broken\n"
        "\n"
        "[1]\n"
        '{"customer": {"id": "c5"}, "data": {"offer": "X"}}\n'
    )
    parsed = list(read_jsonl(io.StringIO(text)))
    assert parsed == [
        Row(1, {"id": "c1", "first_name": "Ada", "attributes": {"tier": "gold"}}, {}),
        RowError(2, "not JSON: Expecting property name enclosed in double quotes at column 2"),
        RowError(4, "expected a JSON object"),
        Row(5, {"id": "c5", "attributes": {}}, {"offer": "X"}),
    ]
    items = list(read_items([{"customer_id": "c1"}, {"customer_id": "x" * 300}]))
    assert items == [
        Row(1, {"id": "c1", "attributes": {}}, {}),
        RowError(2, "customer_id: String should have at most 255 characters"),
    ]


def _rows(count: int) -> Iterator[str]:
    yield "customer_id,first_name,tier,data.offer\n"
    for i in range(count):
        yield f"c{i},Name{i},gold,OFFER-{i}\n"


def _peak_import(db: Database, path: Path, count: int) -> int:
    path.write_text("".join(_rows(count)))
    campaign_id = draft(db)
    tracemalloc.start()
    try:
        with db.session() as session, path.open() as stream:
            result = import_rows(
                session, campaign_id, read_csv(stream), batch_rows=200, on_batch=session.commit
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.imported == count
    return peak


def test_import_memory_does_not_grow_with_the_file(db: Database, tmp_path: Path) -> None:
    # Given two files, one eight times the other
    small = _peak_import(db, tmp_path / "small.csv", 600)
    large = _peak_import(db, tmp_path / "large.csv", 4800)
    # Then the peak is the same bounded batch size for both, not proportional to the rows
    assert large < 8 * 1024 * 1024
    assert large < small * 1.5


def test_a_repeat_inside_one_batch_keeps_the_earlier_line_and_the_rest_of_the_batch(
    db: Database,
) -> None:
    # Given one batch (on Postgres one COPY, which a repeated customer makes fail as a whole)
    items = [
        {"customer_id": "a", "first_name": "First"},
        {"customer_id": "b"},
        {"customer_id": "a", "first_name": "Second"},
        {"customer_id": "c"},
    ]
    campaign_id = draft(db)
    # When it is imported
    with db.session() as session:
        result = import_rows(session, campaign_id, read_items(items), batch_rows=10)
    # Then every other row of the batch is kept, the repeat is an error, the first line wins
    assert (result.imported, result.errors) == (3, 1)
    with db.sessions() as session:
        rows = session.execute(
            select(CampaignRecipient.line, CampaignRecipient.customer_id, CampaignRecipient.payload)
            .where(CampaignRecipient.campaign_id == campaign_id)
            .order_by(CampaignRecipient.line)
        ).all()
        errors = import_errors(session, campaign_id, limit=10)
    assert [(line, customer) for line, customer, _ in rows] == [(1, "a"), (2, "b"), (4, "c")]
    assert rows[0][2]["customer"]["first_name"] == "First"
    assert errors == [{"line": 3, "message": "customer_id 'a' appears on an earlier line"}]


def test_tabs_newlines_backslashes_and_unicode_are_stored_exactly(db: Database) -> None:
    # Given values that COPY's text format must escape
    odd = 'tab\there\nnew\\line\r"quoted" \\N ünï 😀'
    items = [{"customer_id": "id\\with\ttab", "first_name": odd, "data": {"note": odd}}]
    campaign_id = draft(db)
    with db.session() as session:
        result = import_rows(session, campaign_id, read_items(items), batch_rows=10)
    assert (result.imported, result.errors) == (1, 0)
    with db.sessions() as session:
        stored = session.execute(
            select(
                CampaignRecipient.customer_id, CampaignRecipient.payload, CampaignRecipient.state
            )
        ).one()
    assert stored == (
        "id\\with\ttab",
        {
            "customer": {"id": "id\\with\ttab", "first_name": odd, "attributes": {}},
            "data": {"note": odd},
        },
        "pending",
    )


def _recipients(db: Database, campaign_id: int) -> list[tuple[int, str, dict[str, object]]]:
    with db.sessions() as session:
        rows = session.execute(
            select(CampaignRecipient.line, CampaignRecipient.customer_id, CampaignRecipient.payload)
            .where(CampaignRecipient.campaign_id == campaign_id)
            .order_by(CampaignRecipient.line)
        ).all()
    return [(line, customer, payload) for line, customer, payload in rows]


def test_overlapped_batches_import_exactly_what_one_thread_does(db: Database) -> None:
    # Given a CSV with a repeat across batches, a bad row and a row with a NUL character
    text = (
        "customer_id,first_name,tier\n"
        + "".join(f"c{n},Name{n},gold\n" for n in range(9))
        + "c3,Again,gold\n,NoId,gold\nc20,Bad\x00Name,gold\nc21,Last,silver\n"
    )
    results = {}
    for overlap in (False, True):
        campaign_id = draft(db)
        # When it is imported two rows a batch, with and without a writer thread
        with db.session() as session:
            result = import_rows(
                session,
                campaign_id,
                read_csv(io.StringIO(text)),
                batch_rows=2,
                on_batch=session.commit,
                overlap=overlap,
            )
        with db.sessions() as session:
            errors = import_errors(session, campaign_id, limit=10)
        results[overlap] = (result.imported, result.errors, _recipients(db, campaign_id), errors)
    # Then both hold the same recipients and the same errors, line by line
    assert results[True][2:] == results[False][2:]
    assert results[True][:2] == results[False][:2] == (10, 3)
    assert [e["line"] for e in results[True][3]] == [11, 12, 13]
    assert results[True][3][1:] == [
        {"line": 12, "message": "customer_id: Field required"},
        {"line": 13, "message": "first_name: Value error, text must not contain the NUL character"},
    ]


def test_a_failing_write_in_the_writer_thread_stops_the_import_with_its_error(
    db: Database,
) -> None:
    campaign_id = draft(db)
    text = "customer_id\n" + "".join(f"c{n}\n" for n in range(10))
    calls: list[int] = []

    def commit_fails() -> None:
        calls.append(1)
        raise RuntimeError("database went away")

    with db.session() as session:
        try:
            import_rows(
                session,
                campaign_id,
                read_csv(io.StringIO(text)),
                batch_rows=2,
                on_batch=commit_fails,
                overlap=True,
            )
        except RuntimeError as exc:
            assert str(exc) == "database went away"
        else:
            raise AssertionError("the writer's error was not raised")
        session.rollback()
    assert calls == [1]  # no batch is written after the failed one
    assert _recipients(db, campaign_id) == []


def test_a_plain_csv_row_is_stored_as_the_validated_customer() -> None:
    # A row that skips pydantic (plain text within the limits) gives what validation gives
    [row] = list(read_csv(io.StringIO("id,email,first_name,last_name,tier\nc1,a@b.c,A,B,gold\n")))
    assert isinstance(row, Row)
    assert row.customer == {
        "id": "c1",
        "email": "a@b.c",
        "first_name": "A",
        "last_name": "B",
        "attributes": {"tier": "gold"},
    }
    too_long = list(read_csv(io.StringIO("customer_id,first_name\nc1," + "x" * 256 + "\n")))
    assert too_long == [
        RowError(2, "first_name: Value should have at most 255 items after validation, not 256")
    ]
