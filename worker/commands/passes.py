"""`passsync passes ...`: look up, list, search, create, change, void and delete passes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel

from worker.commands.actions_cli import (
    AccountOpt,
    JsonOption,
    PortCall,
    confirm_or_exit,
    fail,
    invoke,
    json_object,
    one_of,
    pairs,
)
from worker.providers.port import PassProvider

passes_app = typer.Typer(
    rich_markup_mode=None,
    help="Passes at the provider (every call is audited as cli:<user>).",
    no_args_is_help=True,
)

AsJson = Annotated[bool, JsonOption]
DEFAULT_LIMIT = 50
Template = Annotated[str | None, typer.Option("--template", help="Only this template id.")]
Limit = Annotated[int, typer.Option(help="At most this many passes.")]
PageSize = Annotated[int | None, typer.Option(help="Rows per provider page.")]
FieldOption = Annotated[
    list[str] | None, typer.Option("--field", help="KEY=VALUE (text), repeatable.")
]
FieldsJson = Annotated[
    str | None, typer.Option("--fields-json", help='A JSON object, e.g. {"points": 10}.')
]


class Deleted(BaseModel):
    pass_id: str
    deleted: bool = True


def _deleted(pass_id: str) -> Callable[[PassProvider], BaseModel]:
    def call(client: PassProvider) -> BaseModel:
        client.delete_pass(pass_id)
        return Deleted(pass_id=pass_id)

    return call


def _fields(field: list[str] | None, fields_json: str | None) -> dict[str, Any]:
    given = pairs(field, "--field"), json_object(fields_json, "--fields-json")
    return one_of(*given, "--field or --fields-json") or {}


@passes_app.command("exists")
def exists(
    identifier: str,
    by: Annotated[
        Literal["user_provided_id", "pass_id", "barcode"], typer.Option(help="Identifier kind.")
    ] = "user_provided_id",
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Whether a pass exists (exit 0) or not (exit 1)."""
    found = invoke(
        "pass_exists", {"identifier": identifier, "by": by}, as_json=as_json, account=account
    )
    if getattr(found, "exists", True) is False:
        raise typer.Exit(1)


@passes_app.command("get")
def get(
    identifier: Annotated[str, typer.Argument(help="Pass id, userProvidedId or barcode.")],
    field_mapping: Annotated[bool, typer.Option(help="Include the field mapping.")] = False,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """One pass's details."""
    arguments = {"identifier": identifier, "include_field_mapping": field_mapping}
    port = PortCall(
        lambda client: client.get_pass(identifier),
        writes=False,
        platform_only={"--field-mapping": field_mapping},
    )
    invoke("get_pass", arguments, as_json=as_json, account=account, port=port)


@passes_app.command("list")
def list_(
    template: Template = None,
    limit: Limit = DEFAULT_LIMIT,
    page_size: PageSize = None,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Passes, newest first."""
    arguments = {"template_id": template, "limit": limit, "page_size": page_size}
    invoke("list_passes", arguments, as_json=as_json, account=account)


@passes_app.command("search")
def search(
    phrase: str,
    *,
    template: Template = None,
    limit: Limit = DEFAULT_LIMIT,
    page_size: PageSize = None,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Passes whose data contains PHRASE."""
    arguments = {"phrase": phrase, "template_id": template, "limit": limit, "page_size": page_size}
    invoke("search_passes", arguments, as_json=as_json, account=account)


@passes_app.command("query")
def query(
    *,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="'FIELD OPERATOR [VALUE]', repeatable, all must hold; VALUE is read as JSON "
            'when it parses (10, true, ["a","b"]), else as text.'
        ),
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option(help="Groups as JSON (ORed lists of ANDed conditions), instead of --where."),
    ] = None,
    search: Annotated[str | None, typer.Option(help="Search phrase.")] = None,
    template: Template = None,
    limit: Limit = DEFAULT_LIMIT,
    page_size: PageSize = None,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Passes matching a Query Language query (`passsync tools schema --action query_passes`)."""
    if where and groups is not None:
        fail("give --where or --groups, not both")
    arguments: dict[str, Any] = {
        "groups": _groups(groups) if groups is not None else _where(where),
        "search_phrase": search,
        "template_id": template,
        "limit": limit,
        "page_size": page_size,
    }
    invoke("query_passes", arguments, as_json=as_json, account=account)


def _where(conditions: list[str] | None) -> list[list[dict[str, Any]]]:
    group = [_condition(text) for text in conditions or []]
    return [group] if group else []


def _condition(text: str) -> dict[str, Any]:
    parts = text.split(maxsplit=2)
    if len(parts) < 2:
        fail(f"--where: expected 'FIELD OPERATOR [VALUE]', got {text!r}")
    condition: dict[str, Any] = {"field": parts[0], "operator": parts[1]}
    if len(parts) == 3:
        try:
            condition["value"] = json.loads(parts[2])
        except ValueError:
            condition["value"] = parts[2]
    return condition


def _groups(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(f"--groups: not valid JSON ({exc})")


@passes_app.command("create")
def create(
    *,
    template: Annotated[str, typer.Option("--template", help="Template id.")],
    user_provided_id: Annotated[str | None, typer.Option(help="Your id for the pass.")] = None,
    field: FieldOption = None,
    fields_json: FieldsJson = None,
    barcode: Annotated[str | None, typer.Option(help="Barcode value.")] = None,
    group: Annotated[str | None, typer.Option(help="Grouping identifier.")] = None,
    enforce_unique: Annotated[
        bool, typer.Option(help="Refuse a second pass with the same userProvidedId.")
    ] = True,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Create a pass."""
    fields = _fields(field, fields_json)
    arguments = {
        "template_id": template,
        "user_provided_id": user_provided_id,
        "fields": fields,
        "barcode_value": barcode,
        "grouping_identifier": group,
        "enforce_unique": enforce_unique,
    }
    upid = user_provided_id or ""
    port = PortCall(
        lambda client: client.create_pass(
            template_id=template, user_provided_id=upid, fields=fields
        ),
        writes=True,
        platform_only={"--barcode": barcode is not None, "--group": group is not None},
        required={"--user-provided-id": bool(upid)},
    )
    invoke("create_pass", arguments, as_json=as_json, account=account, port=port)


@passes_app.command("update")
def update(
    pass_id: str,
    *,
    field: FieldOption = None,
    fields_json: FieldsJson = None,
    replace: Annotated[
        bool, typer.Option(help="Replace the whole record: fields not given are dropped.")
    ] = False,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Change a pass's fields (merged unless --replace)."""
    fields = _fields(field, fields_json)
    arguments = {"pass_id": pass_id, "fields": fields, "replace": replace}
    port = PortCall(
        lambda client: client.update_pass(pass_id, fields),
        writes=True,
        platform_only={"--replace": replace},
    )
    invoke("update_pass", arguments, as_json=as_json, account=account, port=port)


@passes_app.command("delete")
def delete(
    pass_id: str,
    missing_ok: Annotated[bool, typer.Option(help="Succeed when it is already gone.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Delete a pass for good."""
    confirm_or_exit(f"Delete pass {pass_id}?", yes)
    invoke(
        "delete_pass",
        {"pass_id": pass_id, "missing_ok": missing_ok},
        as_json=as_json,
        account=account,
        port=PortCall(_deleted(pass_id), writes=True, platform_only={"--missing-ok": missing_ok}),
    )


@passes_app.command("void")
def void(
    pass_id: str,
    unvoid: Annotated[bool, typer.Option(help="Make a voided pass valid again.")] = False,
    as_json: AsJson = False,
    account: AccountOpt = None,
) -> None:
    """Void a pass (--unvoid reverses it)."""
    port = PortCall(lambda client: client.set_voided(pass_id, not unvoid), writes=True)
    invoke(
        "void_pass",
        {"pass_id": pass_id, "voided": not unvoid},
        as_json=as_json,
        account=account,
        port=port,
    )
