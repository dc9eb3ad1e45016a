"""`passsync outbox`: list outbound deliveries, show one event with its attempt log, redeliver."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from worker.commands.admin_token import require_token
from worker.config import OUTBOUND_EVENT_TYPES, Settings, load_settings
from worker.db import Database, utcnow
from worker.outbox.admin import (
    DeliveryFilter,
    destination_states,
    list_deliveries,
    redeliver_destination,
    redeliver_event,
    show_event,
)
from worker.outbox.models import DeliveryStatus

outbox_app = typer.Typer(
    rich_markup_mode=None,
    help="Outbound events to the CRM: list, show, redeliver.",
    no_args_is_help=True,
)

SUMMARY = (
    "id",
    "event",
    "type",
    "customer_id",
    "destination",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
)


@outbox_app.command("list")
def list_command(
    *,
    status: Annotated[DeliveryStatus | None, typer.Option(help="Only in this status.")] = None,
    destination: Annotated[str | None, typer.Option(help="Only to this destination.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Deliveries, newest event first, and each destination's state."""
    if type_ is not None and type_ not in OUTBOUND_EVENT_TYPES:
        raise typer.BadParameter(f"one of {', '.join(OUTBOUND_EVENT_TYPES)}", param_hint="--type")
    settings = load_settings()
    where = DeliveryFilter(status, destination, type_, customer)
    with _session(settings) as session:
        found = list_deliveries(session, where, limit=limit, offset=offset)
        states = destination_states(session, settings.outbound.destinations)
    if as_json:
        sys.stdout.write(json.dumps({"deliveries": found, "destinations": states}) + "\n")
        return
    table = Table(*SUMMARY, title=f"outbound deliveries ({len(found)}, newest first)")
    for row in found:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in SUMMARY))
    console = Console(width=200)
    console.print(table)
    for state in states:
        console.print(_state_line(state))


def _state_line(state: dict[str, object]) -> str:
    counts = state["deliveries"]
    assert isinstance(counts, dict)
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    if not state["configured"]:
        return f"destination {state['name']}: not configured ({shown})"
    if not state["enabled"]:
        return (
            f"destination {state['name']}: DISABLED since {state['disabled_at']} "
            f"({state['disabled_reason']}); `passsync outbox redeliver --destination "
            f"{state['name']}` enables it ({shown})"
        )
    return f"destination {state['name']}: enabled ({shown})"


@outbox_app.command("show")
def show_command(event_id: Annotated[int, typer.Argument(metavar="EVENT")]) -> None:
    """One outbound event: the envelope sent, its deliveries and every attempt, as JSON."""
    with _session(load_settings()) as session:
        found = show_event(session, event_id)
    if found is None:
        typer.echo(f"no outbound event with id {event_id}", err=True)
        raise typer.Exit(1)
    sys.stdout.write(json.dumps(found, indent=2) + "\n")


@outbox_app.command("redeliver")
def redeliver_command(
    event_id: Annotated[int | None, typer.Argument(metavar="EVENT", show_default=False)] = None,
    destination: Annotated[
        str | None,
        typer.Option(help="Only this destination; alone: re-enable it and retry its failures."),
    ] = None,
) -> None:
    """Send an event again with a fresh retry schedule (same webhook-id), or re-enable a
    destination (after a 410) and retry every delivery it failed."""
    if event_id is None and destination is None:
        typer.echo("give an EVENT id, or --destination NAME", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    require_token(settings)
    wanted = {n: d.event_types for n, d in settings.outbound.destinations.items()}
    if destination is not None and destination not in wanted:
        typer.echo(f"destination {destination!r} is not configured", err=True)
        raise typer.Exit(2)
    with _session(settings) as session:
        if event_id is None:
            assert destination is not None
            message = _redeliver_destination(session, destination)
        else:
            ids = redeliver_event(session, event_id, wanted, destination=destination, now=utcnow())
            if ids is None:
                typer.echo(f"no outbound event with id {event_id}", err=True)
                raise typer.Exit(1)
            message = f"event {event_id}: {len(ids)} deliveries set pending"
    typer.echo(message)
    problem = publish(settings)
    if problem:
        typer.echo(f"not kicked ({problem}); beat delivers them shortly", err=True)


def _redeliver_destination(session: Session, name: str) -> str:
    enabled, count = redeliver_destination(session, name, utcnow())
    return f"destination {name}: {'re-enabled, ' if enabled else ''}{count} deliveries set pending"


def publish(settings: Settings) -> str | None:
    """Kick a delivery task now; the reason when that is not possible."""
    # Celery is loaded only when publishing, not on every `passsync` start.
    from worker.tasks.app import configure  # noqa: PLC0415
    from worker.tasks.outbox import deliver_outbox  # noqa: PLC0415

    try:
        configure(settings)
        deliver_outbox.apply_async()
    except Exception as exc:  # the change is committed: beat's poll is the fallback
        return str(exc) if "broker_url" in str(exc) else type(exc).__name__
    return None


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    database = Database(settings.database_url, pool_size=1)
    try:
        with database.session() as session:
            yield session
    finally:
        database.dispose()
