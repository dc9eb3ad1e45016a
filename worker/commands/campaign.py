"""`passsync campaign`: create from a CSV or JSONL file, start, pause, resume, cancel, follow
progress live, print the report. Changes need an admin token with the write scope in
PASSSYNC_TOKEN (see worker.commands.admin_token); looking needs none. Beat's dispatcher does
the sending."""

from __future__ import annotations

import functools
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.orm import Session

from worker.campaigns import service
from worker.campaigns.importer import (
    Block,
    FileError,
    ImportResult,
    Row,
    RowError,
    import_rows,
    read_csv_blocks,
    read_jsonl,
)
from worker.campaigns.models import FINAL, Campaign
from worker.campaigns.service import CampaignError, CampaignSpec
from worker.commands.admin_token import require_token
from worker.config import Settings, load_settings
from worker.db import Database

campaign_app = typer.Typer(
    rich_markup_mode=None,
    help="Bulk issuance campaigns (changes need a write token in PASSSYNC_TOKEN).",
    no_args_is_help=True,
)
T = TypeVar("T")
console = Console(stderr=True)


@campaign_app.command("create")
def create_command(
    file: Annotated[Path, typer.Argument(help="CSV (with a header row) or JSONL.", exists=True)],
    *,
    name: Annotated[str | None, typer.Option(help="Default: the file name.")] = None,
    event_type: Annotated[str | None, typer.Option(help="The rules' event type.")] = None,
    rule: Annotated[str | None, typer.Option(help="Use this rule's event type.")] = None,
    template: Annotated[str | None, typer.Option(help="Use the rule upserting it.")] = None,
    data: Annotated[str | None, typer.Option(help="JSON object merged into each row.")] = None,
    start_at: Annotated[str | None, typer.Option(help="ISO time; beat starts it.")] = None,
    end_at: Annotated[str | None, typer.Option(help="ISO time; nothing is sent after.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Count the calls, make none.")] = False,
    start: Annotated[bool, typer.Option(help="Start it right away.")] = False,
    file_format: Annotated[
        Literal["csv", "jsonl"] | None, typer.Option("--format", help="Default: by extension.")
    ] = None,
) -> None:
    """Create a campaign from a file (streamed: any size in flat memory)."""
    settings = load_settings()
    who = require_token(settings)
    spec = CampaignSpec(
        name=name or file.name,
        event_type=event_type,
        rule=rule,
        template=template,
        data=_json_object(data),
        dry_run=dry_run,
        starts_at=_time(start_at, "--start-at"),
        ends_at=_time(end_at, "--end-at"),
        created_by=f"admin:{who}",
    )
    reader = read_jsonl if (file_format or _format_of(file)) == "jsonl" else read_csv_blocks
    with _session(settings) as session, file.open(encoding="utf-8", newline="") as stream:
        rows = _first_checked(file, reader(stream))  # an empty file creates no campaign
        campaign = _guard(lambda: _create(session, spec, settings))
        result = import_rows(
            session,
            campaign.id,
            _counting(rows),
            batch_rows=settings.campaigns.import_batch_rows,
            on_batch=session.commit,
            overlap=True,  # the next batch is parsed while the database takes this one
        )
        if result.imported == 0 and service.discard_empty_draft(session, campaign.id):
            session.commit()
            _no_valid_recipient(file, result)
        if start:
            _guard(lambda: service.start(session, campaign.id))
        campaign_id, status = campaign.id, campaign.status
    typer.echo(f"campaign {campaign_id}: {result.imported} recipients, {result.errors} errors")
    typer.echo(_next_step(campaign_id, status, spec))
    for error in result.first_errors:
        typer.echo(f"  line {error.line}: {error.message}", err=True)
    if result.errors > len(result.first_errors):
        typer.echo(f"  ... see `passsync campaign report {campaign_id}`", err=True)


def _no_valid_recipient(file: Path, result: ImportResult) -> NoReturn:
    """Every line was an error: no campaign is left behind (exit 2), the first errors shown."""
    typer.echo(
        f"{file}: no valid recipient ({result.errors} errors); no campaign created", err=True
    )
    for error in result.first_errors:
        typer.echo(f"  line {error.line}: {error.message}", err=True)
    raise typer.Exit(2)


def _next_step(campaign_id: int, status: str, spec: CampaignSpec) -> str:
    """What happens next, so a draft is not mistaken for a campaign that is sending."""
    if status == "draft":
        when = (
            f"; once started, beat begins at {spec.starts_at.isoformat()}" if spec.starts_at else ""
        )
        return f"it is a draft: nothing is sent until `passsync campaign start {campaign_id}`{when}"
    return f"status: {status} (follow it: `passsync campaign status {campaign_id} --follow`)"


def _first_checked(
    file: Path, rows: Iterator[Row | RowError | Block]
) -> Iterator[Row | RowError | Block]:
    """The rows, once the file is known to hold some: an empty file, or one whose header is
    unusable, is refused (exit 2) before any campaign exists."""
    first = next(rows, None)
    if first is None:
        typer.echo(f"{file}: no recipients in the file; no campaign created", err=True)
        raise typer.Exit(2)
    if isinstance(first, FileError):
        typer.echo(f"{file}: {first.message}; no campaign created", err=True)
        raise typer.Exit(2)
    return itertools.chain([first], rows)


def _create(session: Session, spec: CampaignSpec, settings: Settings) -> Campaign:
    from worker.sync.rules import compile_rules  # noqa: PLC0415 - only `create` needs the rules

    campaign = service.create_campaign(session, spec, compile_rules(settings.sync))
    session.commit()  # the rows then go in committed batches
    return campaign


def _counting(rows: Iterator[Row | RowError | Block]) -> Iterator[Row | RowError | Block]:
    """Pass rows through, printing a count now and then on big files."""
    count = 0
    for row in rows:
        before = count
        count += len(row) if isinstance(row, Block) else 1
        if count // 100_000 > before // 100_000:
            console.print(f"  {count - count % 100_000:,} rows read")
        yield row


def _change(verb: str, action: Callable[[Session, int], Campaign]) -> Callable[[int], None]:
    def command(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
        settings = load_settings()
        require_token(settings)
        with _session(settings) as session:
            campaign = _guard(lambda: action(session, campaign_id))
            shown = campaign.status
        typer.echo(f"campaign {campaign_id}: {shown}")

    command.__doc__ = f"{verb.capitalize()} a campaign."
    return command


campaign_app.command("start")(_change("start", service.start))
campaign_app.command("pause")(_change("pause", service.pause))
campaign_app.command("resume")(_change("resume", service.resume))
campaign_app.command("cancel")(_change("cancel", service.cancel))


@campaign_app.command("status")
def status_command(
    campaign_id: Annotated[int, typer.Argument(metavar="ID")],
    follow: Annotated[bool, typer.Option(help="A live progress bar until it ends.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Progress: done, skipped, failed, remaining, rate, ETA."""
    settings = load_settings()
    database = Database(settings.database_url, pool_size=1)
    try:
        read = functools.partial(_progress, database, campaign_id)
        if follow:
            _follow(read, interval)
        shown = read()
    finally:
        database.dispose()
    if as_json:
        sys.stdout.write(json.dumps(shown) + "\n")
        return
    table = Table("field", "value", title=f"campaign {campaign_id}")
    for key, value in shown.items():
        table.add_row(key, "" if value is None else str(value))
    Console().print(table)


def _progress(database: Database, campaign_id: int) -> dict[str, Any]:
    with database.session() as session:
        return _guard(lambda: service.progress(session, campaign_id)).as_dict()


def _follow(read: Callable[[], dict[str, Any]], interval: float) -> None:
    shown = read()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(shown["name"], total=shown["total"] or 1, detail="")
        while True:
            finished = shown["total"] - shown["remaining"]
            detail = (
                f"{shown['status']} · done {shown['done']:,} · skipped {shown['skipped']:,}"
                f" · failed {shown['failed']:,} · {shown['rate_per_second']}/s"
            )
            bar.update(task, completed=finished, detail=detail)
            if shown["status"] in FINAL:
                return
            time.sleep(interval)
            shown = read()


@campaign_app.command("report")
def report_command(
    campaign_id: Annotated[int, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The final report (or the report so far while it runs)."""
    settings = load_settings()
    with _session(settings) as session:
        campaign = _guard(lambda: service.get_campaign(session, campaign_id))
        report = campaign.report or service.build_report(session, campaign)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    Console().print(report_table(report))
    _print_problems(report)


def report_table(report: dict[str, Any]) -> Table:
    """The report for people: one row per figure, states and outcomes spelled out."""
    table = Table("", "", title=f"campaign {report['id']}: {report['name']}", show_header=False)
    table.add_row("status", str(report["status"]) + (" (dry run)" if report["dry_run"] else ""))
    table.add_row("recipients", f"{report['total']:,}")
    for state, count in report["states"].items():
        table.add_row(f"  {state}", f"{count:,}")
    for outcome, count in report["outcomes"].items():
        table.add_row(f"outcome {outcome}", f"{count:,}")
    verb = "provider calls (would make)" if report["dry_run"] else "provider calls"
    table.add_row(verb, f"{report['provider_calls']:,}")
    rate = report["recipients_per_second"]
    took = "not started" if report["started_at"] is None else f"{report['seconds']} s"
    table.add_row("time", took + ("" if rate is None else f" ({rate}/s)"))
    table.add_row("import errors", f"{report['import_errors']:,}")
    return table


def _print_problems(report: dict[str, Any]) -> None:
    out = Console(highlight=False)
    for failure in report["failures"]:
        out.print(f"failed line {failure['line']} ({failure['customer_id']}): {failure['error']}")
    for error in report["first_import_errors"]:
        out.print(f"not imported, line {error['line']}: {error['message']}")


@campaign_app.command("list")
def list_command() -> None:
    """The latest campaigns."""
    settings = load_settings()
    with _session(settings) as session:
        rows = [
            (str(c.id), c.name, c.status, str(c.total), str(c.dry_run))
            for c in service.list_campaigns(session)
        ]
    table = Table("id", "name", "status", "recipients", "dry run", title="campaigns")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _guard(call: Callable[[], T]) -> T:
    try:
        return call()
    except CampaignError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    database = Database(settings.database_url, pool_size=1)
    try:
        with database.session() as session:
            yield session
    finally:
        database.dispose()


def _format_of(path: Path) -> str:
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


def _json_object(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise typer.BadParameter("not JSON", param_hint="--data") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--data")
    return value


def _time(value: str | None, hint: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("not an ISO 8601 time", param_hint=hint) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
