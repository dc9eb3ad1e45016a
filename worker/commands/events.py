"""`passsync events`: list and show ledger events, replay one, the dead letter, or a period."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from worker.commands.admin_token import require_token
from worker.config import Settings, load_settings
from worker.db import Database
from worker.inbound.ledger import get_event, list_events, replay_event, replay_events
from worker.inbound.models import EventStatus, InboundEvent

events_app = typer.Typer(
    rich_markup_mode=None,
    help="The inbound event ledger: list, show, replay.",
    no_args_is_help=True,
)

SUMMARY = ("id", "source", "event_id", "type", "customer_id", "status", "attempts", "last_error")


@events_app.command("list")
def list_command(
    status: Annotated[EventStatus | None, typer.Option(help="Only events in this status.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Received at or after (ISO, UTC if naive).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Ledger events, newest first."""
    with _session(load_settings()) as session:
        rows = list_events(session, status, _time(since), limit=limit, offset=offset)
        found = [as_dict(row) for row in rows]
    if as_json:
        sys.stdout.write(json.dumps({"events": found}) + "\n")
        return
    table = Table(*SUMMARY, title=f"events ({len(found)}, newest first)")
    for row in found:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in SUMMARY))
    Console(width=200).print(table)


@events_app.command("show")
def show_command(event_pk: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One event with its payload, as JSON."""
    with _session(load_settings()) as session:
        row = get_event(session, event_pk)
        found = None if row is None else as_dict(row) | {"payload": row.payload}
    if found is None:
        typer.echo(f"no event with id {event_pk}", err=True)
        raise typer.Exit(1)
    sys.stdout.write(json.dumps(found, indent=2) + "\n")


@events_app.command("replay")
def replay_command(
    event_pk: Annotated[int | None, typer.Argument(metavar="ID", show_default=False)] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead event.")] = False,
    since: Annotated[
        str | None, typer.Option(help="Dead and failed events received since (ISO).")
    ] = None,
) -> None:
    """Set events pending with fresh attempts and enqueue them; pending ones are left alone."""
    if (event_pk is not None) == (dead or since is not None):
        typer.echo("give an event ID, or --dead and/or --since", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    require_token(settings)
    with _session(settings) as session:
        ids = _replay(session, event_pk, dead=dead, since=_time(since))
    if not ids:
        typer.echo("nothing to replay: no such event is handled, failed or dead")
        return
    problem = publish(settings, ids)
    shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
    typer.echo(f"replayed {len(ids)} event(s): {shown}")
    if problem:
        typer.echo(f"not enqueued ({problem}); the sweeper sends them shortly", err=True)


def _replay(
    session: Session, event_pk: int | None, *, dead: bool, since: datetime | None
) -> list[int]:
    if event_pk is None:
        statuses = [EventStatus.DEAD] if dead else [EventStatus.DEAD, EventStatus.FAILED]
        return replay_events(session, statuses, since=since)
    replay = replay_event(session, event_pk)
    if not replay.found:
        typer.echo(f"no event with id {event_pk}", err=True)
        raise typer.Exit(1)
    return [event_pk] if replay.enqueue else []


def publish(settings: Settings, ids: list[int]) -> str | None:
    """Enqueue the ids; the reason when that is not possible (they stay pending)."""
    # Celery is loaded only when publishing, not on every `passsync` start.
    from worker.tasks.app import configure  # noqa: PLC0415
    from worker.tasks.jobs import enqueue_events  # noqa: PLC0415

    try:
        configure(settings)
        enqueue_events(ids, countdown=0)
    except Exception as exc:  # the events are committed: the sweeper is the fallback
        return str(exc) if "broker_url" in str(exc) else type(exc).__name__
    return None


def as_dict(row: InboundEvent) -> dict[str, Any]:
    """The ledger row without its payload, JSON-ready."""
    return {
        "id": row.id,
        "source": row.source,
        "event_id": row.event_id,
        "type": row.type,
        "customer_id": row.customer_id,
        "occurred_at": row.occurred_at.isoformat(),
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "received_at": row.received_at.isoformat(),
        "handled_at": _iso(row.handled_at),
        "enqueued_at": _iso(row.enqueued_at),
        "coalesced_into": row.coalesced_into,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    database = Database(settings.database_url, pool_size=1)
    try:
        with database.session() as session:
            yield session
    finally:
        database.dispose()


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("not an ISO 8601 time", param_hint="--since") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
