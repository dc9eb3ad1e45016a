"""`passsync tools list|schema`: the provider actions as tools, with their JSON Schemas."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from worker.actions import UnknownActionError, schemas
from worker.commands.actions_cli import AccountOpt, fail
from worker.commands.audited import SetupError, catalogue_of
from worker.config import ConfigError, load_settings

tools_app = typer.Typer(
    rich_markup_mode=None, help="The provider actions as tools for agents.", no_args_is_help=True
)


def _catalogue(account: str | None) -> dict[str, Any]:
    try:
        return dict(catalogue_of(load_settings(), account))
    except (SetupError, ConfigError) as exc:
        fail(str(exc))


@tools_app.command("list")
def list_(account: AccountOpt = None) -> None:
    """Each action of the account's platform: name, read or write, what it does."""
    actions = _catalogue(account)
    table = Table("name", "kind", "description", title=f"{len(actions)} actions")
    for action in actions.values():
        table.add_row(action.name, "write" if action.writes else "read", action.description)
    Console(width=200).print(table)


@tools_app.command("schema")
def schema(
    action: Annotated[
        list[str] | None, typer.Option(help="Only this action (repeatable; default: all).")
    ] = None,
    account: AccountOpt = None,
) -> None:
    """JSON Schema of each action's input and output: {name: {description, writes, input,
    output}}."""
    try:
        found = schemas(_catalogue(account), action)
    except UnknownActionError as exc:
        fail(str(exc))
    sys.stdout.write(json.dumps(found, indent=2) + "\n")
