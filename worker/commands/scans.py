"""`passsync scans`: list the scans ledger (filters, paging) and show one scan, each with
its effect and outcome. Read-only: no token needed."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from worker.config import load_settings
from worker.db import Database
from worker.scans.listing import ScanFilter, get_scan, list_scans
from worker.scans.models import ScanStatus

scans_app = typer.Typer(
    rich_markup_mode=None,
    help="The scans ledger: list and show, with effects.",
    no_args_is_help=True,
)

COLUMNS = ("id", "source", "scanned_at", "customer_id", "pass_key", "location", "outcome")


@scans_app.command("list")
def list_command(
    *,
    status: Annotated[ScanStatus | None, typer.Option(help="Only scans in this status.")] = None,
    source: Annotated[str | None, typer.Option(help="Only from this source.")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's.")] = None,
    pass_key: Annotated[str | None, typer.Option(help="Only this pass key's.")] = None,
    location: Annotated[str | None, typer.Option(help="Only at this location.")] = None,
    since: Annotated[str | None, typer.Option(help="Scanned at or after (ISO).")] = None,
    until: Annotated[str | None, typer.Option(help="Scanned before (ISO).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Scans, newest first, with what each did."""
    where = ScanFilter(
        status,
        source,
        customer,
        pass_key,
        location,
        _time(since, "--since"),
        _time(until, "--until"),
    )
    database = Database(load_settings().database_url, pool_size=1)
    try:
        with database.session() as session:
            found = list_scans(session, where, limit=limit, offset=offset)
    finally:
        database.dispose()
    if as_json:
        sys.stdout.write(json.dumps({"scans": found, "limit": limit, "offset": offset}) + "\n")
        return
    table = Table(*COLUMNS, title=f"scans ({len(found)}, newest first)")
    for row in found:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in COLUMNS))
    Console(width=200).print(table)
    if not found and offset == 0:
        typer.echo("no scans yet: a point of sale posts them, signed, to /scans/<source>")


@scans_app.command("show")
def show_command(scan_pk: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One scan as JSON: what was scanned, its effect, its outcome."""
    database = Database(load_settings().database_url, pool_size=1)
    try:
        with database.session() as session:
            found = get_scan(session, scan_pk)
    finally:
        database.dispose()
    if found is None:
        typer.echo(f"no scan with id {scan_pk}", err=True)
        raise typer.Exit(1)
    sys.stdout.write(json.dumps(found, indent=2) + "\n")


def _time(value: str | None, hint: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("not an ISO 8601 time", param_hint=hint) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
