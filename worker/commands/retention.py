"""`passsync retention`: what a purge would delete now, and a purge run by hand."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from worker.commands.admin_token import require_token
from worker.config import load_settings
from worker.db import Database
from worker.retention.purge import TABLES, RetentionReport, retention_status, run_retention

retention_app = typer.Typer(
    rich_markup_mode=None,
    help="Finished ledger, outbox, adoption and scan rows past their retention windows.",
    no_args_is_help=True,
)


@retention_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per table: its window (days, 0 = forever), the rows it holds and how many a purge
    would delete now."""
    settings = load_settings()
    database = Database(settings.database_url, pool_size=1)
    try:
        with database.session() as session:
            found = retention_status(session, settings.retention)
    finally:
        database.dispose()
    if as_json:
        payload = {"enabled": settings.retention.enabled, "tables": found}
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    state = "on" if settings.retention.enabled else "off (retention.enabled: false)"
    table = Table("table", "days", "cutoff", "rows", "purgeable", title=f"retention: beat {state}")
    for row in found:
        days = "forever" if not row["days"] else str(row["days"])
        table.add_row(
            row["table"], days, row["cutoff"] or "", str(row["rows"]), str(row["purgeable"])
        )
    Console(width=160).print(table)


@retention_app.command("run")
def run(
    table: Annotated[
        list[str] | None,
        typer.Option(help=f"Only this table (repeatable): {', '.join(TABLES)}."),
    ] = None,
    until_done: Annotated[
        bool,
        typer.Option(
            "--until-done/--once",
            help="Repeat until nothing eligible is left, or stop after retention.max_seconds.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Purge now, in the same short batches as beat (also when retention.enabled is false:
    that only stops beat). Safe to repeat and to run beside beat."""
    tables = table or list(TABLES)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise typer.BadParameter(f"one of {', '.join(TABLES)}", param_hint="--table")
    settings = load_settings()
    require_token(settings)
    database = Database(settings.database_url, pool_size=1)
    try:
        report = run_retention(database, settings.retention, tables=tables)
        while until_done and not report.done:
            more = run_retention(database, settings.retention, tables=tables)
            _add(report, more)
    finally:
        database.dispose()
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
        return
    for entry in report.tables:
        if entry.cutoff is None:
            typer.echo(f"{entry.table}: kept forever (retention.{entry.table}_days is 0)")
            continue
        left = "" if entry.done else " (time up: more left for the next run)"
        typer.echo(
            f"{entry.table}: purged {entry.purged} rows finished before "
            f"{entry.cutoff.isoformat()} in {entry.batches} batches{left}"
        )


def _add(total: RetentionReport, more: RetentionReport) -> None:
    for entry, extra in zip(total.tables, more.tables, strict=True):
        entry.purged += extra.purged
        entry.batches += extra.batches
        entry.done = extra.done
