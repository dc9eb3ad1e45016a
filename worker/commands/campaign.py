"""`passsync campaign`: create from a CSV or JSONL file, start, pause, resume, cancel, follow
progress live, print the report. Needs an admin token (PASSSYNC_TOKEN): read scope to look,
write scope to change. Beat's dispatcher does the sending."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.orm import Session

from worker.campaigns import service
from worker.campaigns.importer import Row, RowError, import_rows, read_csv, read_jsonl
from worker.campaigns.models import FINAL, Campaign
from worker.campaigns.service import CampaignError, CampaignSpec
from worker.config import Settings, load_settings
from worker.db import Database

campaign_app = typer.Typer(
    help="Bulk issuance campaigns (admin token in PASSSYNC_TOKEN).", no_args_is_help=True
)
TOKEN_ENV = "PASSSYNC_TOKEN"  # noqa: S105 - the variable's name, not a secret
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
    who = _authorize(settings, "write")
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
    reader = read_jsonl if (file_format or _format_of(file)) == "jsonl" else read_csv
    with _session(settings) as session, file.open(encoding="utf-8", newline="") as stream:
        campaign = _guard(lambda: _create(session, spec, settings))
        result = import_rows(
            session,
            campaign.id,
            _counting(reader(stream)),
            batch_rows=settings.campaigns.import_batch_rows,
            on_batch=session.commit,
        )
        if start:
            _guard(lambda: service.start(session, campaign.id))
        campaign_id = campaign.id
    typer.echo(f"campaign {campaign_id}: {result.imported} recipients, {result.errors} errors")
    for error in result.first_errors:
        typer.echo(f"  line {error.line}: {error.message}", err=True)
    if result.errors > len(result.first_errors):
        typer.echo(f"  ... see `passsync campaign report {campaign_id}`", err=True)


def _create(session: Session, spec: CampaignSpec, settings: Settings) -> Campaign:
    from worker.sync.rules import compile_rules  # noqa: PLC0415 - only `create` needs the rules

    campaign = service.create_campaign(session, spec, compile_rules(settings.sync))
    session.commit()  # the rows then go in committed batches
    return campaign


def _counting(rows: Iterator[Row | RowError]) -> Iterator[Row | RowError]:
    """Pass rows through, printing a count now and then on big files."""
    for count, row in enumerate(rows, start=1):
        if count % 100_000 == 0:
            console.print(f"  {count:,} rows read")
        yield row


def _change(verb: str, action: Callable[[Session, int], Campaign]) -> Callable[[int], None]:
    def command(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
        settings = load_settings()
        _authorize(settings, "write")
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
    _authorize(settings, "read")
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
    _authorize(settings, "read")
    with _session(settings) as session:
        campaign = _guard(lambda: service.get_campaign(session, campaign_id))
        report = campaign.report or service.build_report(session, campaign)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out = Console()
    out.print(f"[bold]campaign {report['id']}[/bold] {report['name']}: {report['status']}")
    out.print(f"  states     {report['states']}")
    out.print(f"  outcomes   {report['outcomes']}")
    calls = "would make" if report["dry_run"] else "made"
    out.print(f"  calls      {report['provider_calls']} ({calls})")
    out.print(f"  seconds    {report['seconds']}  ({report['recipients_per_second']}/s)")
    for failure in report["failures"]:
        out.print(f"  failed line {failure['line']} ({failure['customer_id']}): {failure['error']}")
    for error in report["first_import_errors"]:
        out.print(f"  not imported line {error['line']}: {error['message']}")


@campaign_app.command("list")
def list_command() -> None:
    """The latest campaigns."""
    settings = load_settings()
    _authorize(settings, "read")
    with _session(settings) as session:
        rows = [
            (str(c.id), c.name, c.status, str(c.total), str(c.dry_run))
            for c in service.list_campaigns(session)
        ]
    table = Table("id", "name", "status", "recipients", "dry run", title="campaigns")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _authorize(settings: Settings, scope: str) -> str:
    """The admin token's name, or exit 2 when PASSSYNC_TOKEN is missing, unknown or lacks
    `scope` (the same tokens and scopes as the admin API)."""
    from worker.api.auth import AdminAuth  # noqa: PLC0415 - only this check needs it

    presented = os.environ.get(TOKEN_ENV, "")
    principal = AdminAuth(settings.admin_tokens).authenticate(presented) if presented else None
    if principal is None:
        typer.echo(f"an admin token is required: set {TOKEN_ENV}", err=True)
        raise typer.Exit(2)
    if scope not in principal.scopes:
        typer.echo(f"token {principal.name} lacks the {scope} scope", err=True)
        raise typer.Exit(2)
    return principal.name


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
