"""Run one provider action for a person at the terminal: validate, call as cli:<user>, print.

Exit codes: 0 done, 1 the provider refused or failed (or `exists` found nothing), 2 bad
input or setup (nothing was sent).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from worker.actions import InvalidArgumentsError, UnknownActionError, get_action
from worker.audit import Actor, acting_as
from worker.commands.admin_token import require_token
from worker.commands.audited import SetupError, audited_client, catalogue_of
from worker.config import ConfigError, load_settings
from worker.providers import registry
from worker.providers.errors import ProviderError, RateLimitedError
from worker.providers.port import PassProvider

PASS_COLUMNS = ("pass_id", "user_provided_id", "template_id", "voided", "modified_on")
JsonOption = typer.Option("--json", help="Print JSON (for scripts).")
AccountOpt = Annotated[
    str | None,
    typer.Option(
        "--account",
        help="The provider account (a name under providers:; default: sync.default_account).",
        envvar="PASSSYNC_ACCOUNT",
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: 2 for bad input or setup, 1 for a provider failure."""
    sys.stderr.write(f"passsync: {' '.join(message.split())}\n")
    raise typer.Exit(code)


@dataclass(frozen=True)
class PortCall:
    """What a command does through the port when the account's platform has no action of
    that name (the command's options its platform action alone understands must be unset)."""

    call: Callable[[PassProvider], BaseModel]
    writes: bool
    platform_only: Mapping[str, bool] = field(default_factory=dict)  # option -> it is set
    required: Mapping[str, bool] = field(default_factory=dict)  # option -> it is set


def invoke(
    name: str,
    arguments: dict[str, Any],
    *,
    as_json: bool,
    account: str | None = None,
    port: PortCall | None = None,
) -> BaseModel:
    """Validate `arguments`, run the account's action as the CLI user (audited with the
    account), print the result and return it. Without such an action on the account's
    platform, `port` (if given) does the same through the neutral port."""
    try:
        settings = load_settings()
        action = get_action(catalogue_of(settings, account), name)
    except UnknownActionError as exc:
        if port is None:
            fail(str(exc))
        return _invoke_port(settings, name, port, as_json=as_json, account=account)
    except (SetupError, ConfigError) as exc:
        fail(str(exc))
    if action.writes:
        require_token(settings)
    try:
        parsed = action.parse(arguments)
        with audited_client(settings, account) as client, acting_as(Actor.cli()):
            output: BaseModel = action.call(client, parsed)
    except (InvalidArgumentsError, SetupError, ConfigError) as exc:
        fail(str(exc))
    except RateLimitedError as exc:
        fail(f"{exc.message} (retry in {exc.retry_after:g}s)", 1)
    except ProviderError as exc:
        fail(exc.message, 1)
    show(output, as_json=as_json)
    return output


def _invoke_port(
    settings: Any, name: str, port: PortCall, *, as_json: bool, account: str | None
) -> BaseModel:
    title = registry.account(settings, account).kind.title
    used = [option for option, given in port.platform_only.items() if given]
    if used:
        fail(f"{', '.join(used)}: not available on a {title} account (no {name!r} action)")
    missing = [option for option, given in port.required.items() if not given]
    if missing:
        fail(f"{', '.join(missing)}: required on a {title} account")
    if port.writes:
        require_token(settings)
    try:
        with audited_client(settings, account) as client, acting_as(Actor.cli()):
            output = port.call(client)
    except (SetupError, ConfigError) as exc:
        fail(str(exc))
    except RateLimitedError as exc:
        fail(f"{exc.message} (retry in {exc.retry_after:g}s)", 1)
    except ProviderError as exc:
        fail(exc.message, 1)
    show(output, as_json=as_json)
    return output


def show(output: BaseModel, *, as_json: bool) -> None:
    """JSON (the action's output schema) or a table for people."""
    if as_json:
        sys.stdout.write(json.dumps(output.model_dump(mode="json")) + "\n")
        return
    console = Console(width=200)
    if isinstance(getattr(output, "passes", None), list):
        console.print(_pass_table(output))
    elif isinstance(getattr(output, "templates", None), list):
        templates: list[Any] = getattr(output, "templates", [])
        table = Table("template_id", "name", title=f"{len(templates)} templates")
        for template in templates:
            table.add_row(template.template_id, template.name)
        console.print(table)
    else:
        console.print(_record_table(output.model_dump(mode="json")))


def _pass_table(output: Any) -> Table:
    more = " (limit reached: --limit for more)" if getattr(output, "limit_reached", False) else ""
    rows: list[BaseModel] = output.passes
    table = Table(*PASS_COLUMNS, title=f"{len(rows)} passes, newest first{more}")
    for row in rows:
        values = row.model_dump(mode="json")
        table.add_row(*(_cell(values.get(column)) for column in PASS_COLUMNS))
    return table


def _record_table(values: dict[str, Any]) -> Table:
    table = Table("field", "value", show_header=False)
    for key, value in values.items():
        if value not in (None, {}, []):
            table.add_row(key, _cell(value))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object given on the command line; anything else exits 2 naming the option."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        fail(f"{option}: not valid JSON ({exc})")
    if not isinstance(value, dict):
        fail(f"{option}: must be a JSON object")
    return value


def pairs(items: list[str] | None, option: str) -> dict[str, str] | None:
    """`KEY=VALUE` options as a mapping (values stay text); a malformed one exits 2."""
    if not items:
        return None
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{option}: expected KEY=VALUE, got {item!r}")
        if key in found:
            fail(f"{option}: {key} given twice")
        found[key] = value
    return found


def one_of(first: dict[str, Any] | None, second: dict[str, Any] | None, options: str) -> Any:
    """The mapping given by exactly one of two options (both at once exits 2)."""
    if first is not None and second is not None:
        fail(f"give {options}, not both")
    return first if first is not None else second


def confirm_or_exit(question: str, yes: bool) -> None:
    """Ask before a destructive call unless --yes; a refusal exits 1 with nothing sent, and
    with no terminal to ask on it is a setup problem (exit 2: add --yes)."""
    require_token(load_settings())  # before asking: a refusal needs no answer
    if yes:
        return
    if not _has_terminal():
        fail(f"{question.rstrip('?')}: asks for confirmation and there is no terminal: add --yes")
    if not typer.confirm(question, default=False):
        fail("aborted, nothing was sent", 1)


def _has_terminal() -> bool:
    return sys.stdin.isatty()
