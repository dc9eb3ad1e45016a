"""`passsync tools list|schema`: the provider actions as tools, with their JSON Schemas."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from worker.actions import ACTIONS, UnknownActionError, schemas
from worker.commands.actions_cli import fail

tools_app = typer.Typer(
    rich_markup_mode=None, help="The provider actions as tools for agents.", no_args_is_help=True
)


@tools_app.command("list")
def list_() -> None:
    """Each action: name, read or write, what it does."""
    table = Table("name", "kind", "description", title=f"{len(ACTIONS)} actions")
    for action in ACTIONS.values():
        table.add_row(action.name, "write" if action.writes else "read", action.description)
    Console(width=200).print(table)


@tools_app.command("schema")
def schema(
    action: Annotated[
        list[str] | None, typer.Option(help="Only this action (repeatable; default: all).")
    ] = None,
) -> None:
    """JSON Schema of each action's input and output: {name: {description, writes, input,
    output}}."""
    try:
        found = schemas(action)
    except UnknownActionError as exc:
        fail(str(exc))
    sys.stdout.write(json.dumps(found, indent=2) + "\n")
