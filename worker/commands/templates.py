"""`passsync templates ...`: list, describe, create, change and delete pass templates."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.commands.actions_cli import (
    AccountOpt,
    JsonOption,
    confirm_or_exit,
    invoke,
    json_object,
    one_of,
    pairs,
)

templates_app = typer.Typer(
    rich_markup_mode=None,
    help="Pass templates at the provider (every call is audited as cli:<user>).",
    no_args_is_help=True,
)

AsJson = Annotated[bool, JsonOption]


@templates_app.command("list")
def list_(as_json: AsJson = False, account: AccountOpt = None) -> None:
    """The templates the API key may see."""
    invoke("list_templates", {}, as_json=as_json, account=account)


@templates_app.command("get")
def get(template_id: str, as_json: AsJson = False, account: AccountOpt = None) -> None:
    """One template's description and fields."""
    invoke("get_template", {"template_id": template_id}, as_json=as_json, account=account)


@templates_app.command("create")
def create(
    *,
    name: Annotated[str, typer.Option(help="Template name.")],
    type_: Annotated[
        str, typer.Option("--type", help="coupon, storeCard, eventTicket, generic, ...")
    ] = "generic",
    description: Annotated[str | None, typer.Option(help="Description.")] = None,
    organization_name: Annotated[str | None, typer.Option(help="Organization name.")] = None,
    extra_json: Annotated[
        str | None, typer.Option("--extra-json", help="More template keys, as a JSON object.")
    ] = None,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Create a template."""
    arguments = {
        "name": name,
        "type": type_,
        "description": description,
        "organization_name": organization_name,
        "extra": json_object(extra_json, "--extra-json") or {},
    }
    invoke("create_template", arguments, as_json=as_json, account=account)


@templates_app.command("update")
def update(
    template_id: str,
    *,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="KEY=VALUE (text), repeatable.")
    ] = None,
    changes_json: Annotated[
        str | None, typer.Option("--changes-json", help="Changes as a JSON object.")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace the whole template.")] = False,
    publish: Annotated[bool, typer.Option(help="Push the change to saved passes.")] = False,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Change a template (merged unless --replace)."""
    changes = one_of(
        pairs(set_, "--set"),
        json_object(changes_json, "--changes-json"),
        "--set or --changes-json",
    )
    arguments = {
        "template_id": template_id,
        "changes": changes or {},
        "replace": replace,
        "publish": publish,
    }
    invoke("update_template", arguments, as_json=as_json, account=account)


@templates_app.command("delete")
def delete(
    template_id: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Delete a template."""
    confirm_or_exit(f"Delete template {template_id}?", yes)
    invoke("delete_template", {"template_id": template_id}, as_json=as_json, account=account)
