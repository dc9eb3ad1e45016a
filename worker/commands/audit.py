"""`passsync audit`: show the audit log of provider calls (table or JSON) and purge it."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from worker.audit import (
    AuditEntry,
    AuditFilter,
    list_entries,
    purge_expired,
    retention_cutoff,
)
from worker.audit.actor import ACTOR_KINDS
from worker.audit.stats import call_stats, parse_since
from worker.commands.admin_token import require_token
from worker.config import load_settings
from worker.db import Database

audit_app = typer.Typer(rich_markup_mode=None, help="The audit log of provider calls.")

COLUMNS = ("id", "at", "actor", "action", "method", "path", "pass_ref", "status", "attempt")


@audit_app.callback(invoke_without_command=True)
def show(
    ctx: typer.Context,
    *,
    action: Annotated[str | None, typer.Option(help="e.g. create_pass")] = None,
    outcome: Annotated[str | None, typer.Option(help="e.g. ok, server_error")] = None,
    actor: Annotated[str | None, typer.Option(help="KIND or KIND:ID, e.g. event:42")] = None,
    pass_ref: Annotated[str | None, typer.Option(help="Pass id or userProvidedId.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, inclusive (UTC if naive).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time, exclusive (UTC if naive).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows per page.")] = 50,
    before: Annotated[int | None, typer.Option(min=1, help="Only ids below this.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show audit rows, newest first (`passsync audit purge` deletes expired ones)."""
    if ctx.invoked_subcommand is not None:
        return
    kind, actor_id = _actor(actor)
    filters = AuditFilter(
        action=action,
        outcome=outcome,
        actor_kind=kind,
        actor_id=actor_id,
        pass_ref=pass_ref,
        since=_time(since, "--since"),
        until=_time(until, "--until"),
    )
    rows = _rows(filters, limit, before)
    next_before = rows[-1]["id"] if len(rows) == limit else None
    if as_json:
        sys.stdout.write(json.dumps({"entries": rows, "next_before": next_before}) + "\n")
    else:
        _print_table(rows, next_before)


@audit_app.command("purge")
def purge(
    days: Annotated[
        int | None, typer.Option(min=1, help="Keep this many days (default: audit.retention_days).")
    ] = None,
) -> None:
    """Delete audit rows older than the retention period (safe to repeat)."""
    settings = load_settings()
    require_token(settings)
    cutoff = retention_cutoff(settings.audit.retention_days if days is None else days)
    if cutoff is None:
        typer.echo("audit.retention_days is 0 (keep forever): nothing purged")
        return
    database = Database(settings.database_url, pool_size=1)
    try:
        deleted = purge_expired(database, before=cutoff)
    finally:
        database.dispose()
    typer.echo(f"deleted {deleted} audit rows older than {cutoff.isoformat()}")


@audit_app.command("stats")
def stats(
    since: Annotated[
        str, typer.Option(help="24h, 7d, 30m, or an ISO time (UTC if naive).")
    ] = "24h",
    account: Annotated[str | None, typer.Option(help="Only this provider account.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Success rate, error classes and p50/p99 latency per account and action."""
    try:
        start = parse_since(since)
    except ValueError:
        raise typer.BadParameter(
            "use 24h, 7d, 30m, 90s or an ISO time", param_hint="--since"
        ) from None
    database = Database(load_settings().database_url, pool_size=1)
    try:
        with database.session() as session:
            rows = call_stats(session, since=start, account=account)
    finally:
        database.dispose()
    if as_json:
        payload = {"since": start.isoformat(), "actions": [row.as_dict() for row in rows]}
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    table = Table(
        "account",
        "action",
        "calls",
        "success",
        "errors",
        "p50 ms",
        "p99 ms",
        title=f"provider calls since {start.isoformat(timespec='seconds')}",
    )
    for row in rows:
        rate = row.success_rate
        table.add_row(
            row.account,
            row.action,
            str(row.calls),
            "" if rate is None else f"{rate:.2%}",
            ", ".join(f"{k} {v}" for k, v in sorted(row.errors.items())),
            "" if row.p50_ms is None else f"{row.p50_ms:.1f}",
            "" if row.p99_ms is None else f"{row.p99_ms:.1f}",
        )
    Console(width=200).print(table)


def _rows(filters: AuditFilter, limit: int, before: int | None) -> list[dict[str, Any]]:
    database = Database(load_settings().database_url, pool_size=1)
    try:
        with database.session() as session:
            entries = list_entries(session, filters, limit=limit, before_id=before)
            return [_as_dict(entry) for entry in entries]
    finally:
        database.dispose()


def _as_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "provider": entry.provider,
        "action": entry.action,
        "method": entry.method,
        "path": entry.path,
        "pass_ref": entry.pass_ref,
        "status": entry.status,
        "duration_ms": entry.duration_ms,
        "attempt": entry.attempt,
        "outcome": entry.outcome,
        "actor_kind": entry.actor_kind,
        "actor_id": entry.actor_id,
    }


def _print_table(rows: list[dict[str, Any]], next_before: int | None) -> None:
    table = Table(*COLUMNS, "outcome", "ms", title=f"audit log ({len(rows)} rows, newest first)")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["at"][:23],
            f"{row['actor_kind']}:{row['actor_id']}",
            row["action"],
            row["method"],
            row["path"],
            row["pass_ref"] or "",
            "" if row["status"] is None else str(row["status"]),
            str(row["attempt"]),
            row["outcome"],
            f"{row['duration_ms']:.1f}",
        )
    console = Console(width=200)
    console.print(table)
    if next_before is not None:
        console.print(f"older rows: --before {next_before}")


def _actor(value: str | None) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    kind, sep, actor_id = value.partition(":")
    if kind not in ACTOR_KINDS:
        raise typer.BadParameter(
            f"kind must be one of {', '.join(ACTOR_KINDS)}", param_hint="--actor"
        )
    return kind, (actor_id if sep else None)


def _time(value: str | None, hint: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("not an ISO 8601 time", param_hint=hint) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
