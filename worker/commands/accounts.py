"""`passsync accounts list|check|rotate`: the provider accounts and their credentials.

No output of these commands holds a secret, a part of one or a digest of one: an account
is shown by its name, platform, region, auth scheme, where its credential comes from
(environment or secrets file), whether the provider accepts it, and a token's expiry.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from worker.commands.admin_token import require_token
from worker.config import ConfigError, load_settings
from worker.providers.credentials import AccountReport, describe_accounts
from worker.providers.registry import UnknownAccountError

log = logging.getLogger("passsync.credentials")

accounts_app = typer.Typer(
    rich_markup_mode=None,
    help="Provider accounts and their credentials (never printed).",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="One JSON document instead of a table.")]
Names = Annotated[list[str] | None, typer.Argument(help="Account names (default: every account).")]

COLUMNS = ("account", "platform", "region", "auth", "source", "token expires")


@accounts_app.command("list")
def list_(as_json: AsJson = False) -> None:
    """Every account: platform, region, auth scheme and where its credential comes from."""
    reports = describe_accounts(load_settings())
    if as_json:
        typer.echo(json.dumps({"accounts": [r.as_json() for r in reports]}, indent=2))
        return
    typer.echo(table(reports))


def table(reports: list[AccountReport]) -> str:
    """The accounts as an aligned text table."""
    rows = [COLUMNS] + [
        (
            r.name,
            r.title,
            r.region or "-",
            r.auth_scheme,
            r.source,
            r.token_expires_at.isoformat() if r.token_expires_at else "-",
        )
        for r in reports
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


@accounts_app.command("check")
def check(names: Names = None, as_json: AsJson = False) -> None:
    """One cheap authenticated call per account, one line each. Exit 1 when the provider
    refuses an account's credential (or it has none), 2 when a provider cannot be reached
    (and none refused); the other accounts are still checked and reported."""
    settings = load_settings()
    try:
        reports = describe_accounts(settings, check=True, names=names or None)
    except UnknownAccountError as exc:
        raise ConfigError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({"accounts": [r.as_json() for r in reports]}, indent=2))
    else:
        for report in reports:
            typer.echo(check_line(report))
    raise typer.Exit(exit_code(reports))


def check_line(report: AccountReport) -> str:
    """`<account> (<platform>): <status>: <reason>[; token expires ...]`."""
    line = f"{report.name} ({report.title}): {report.status}: {report.detail}"
    if report.token_expires_at is not None:
        line += f"; token expires {report.token_expires_at.isoformat()}"
    return line


def exit_code(reports: list[AccountReport]) -> int:
    statuses = {r.status for r in reports}
    if statuses & {"refused", "missing"}:
        return 1
    return 2 if "unavailable" in statuses else 0


@accounts_app.command("rotate")
def rotate(
    no_check: Annotated[
        bool,
        typer.Option("--no-check", help="Reload even if a provider refuses a new credential."),
    ] = False,
) -> None:
    """Reload the credentials (environment, secrets file) in every running process: each
    one builds new clients at its next provider call; calls already under way finish with
    the old credential. First the settings are read and each credential is checked: an
    invalid secrets file, or a credential the provider refuses, changes nothing (exit 1).
    Needs PASSSYNC_TOKEN (an admin token with the write scope)."""
    from worker.providers.rotation import bump_generation  # noqa: PLC0415

    settings = load_settings()  # an invalid or too open secrets file stops here (exit 2)
    who = require_token(settings)  # it changes every running process: the admin-token rule
    if not no_check:
        reports = describe_accounts(settings, check=True)
        refused = [r for r in reports if r.status == "refused"]
        for report in refused:
            typer.echo(check_line(report), err=True)
        if refused:
            typer.echo(
                "nothing reloaded: fix the credential (or pass --no-check to reload anyway)",
                err=True,
            )
            raise typer.Exit(1)
    try:
        generation = bump_generation(settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    seconds = settings.credentials.reload_check_seconds
    log.info("credential generation %s started by token %s", generation, who)
    typer.echo(
        f"credential generation {generation}: every passsync process reloads its accounts' "
        f"credentials within {seconds:g} s (at its next provider call)"
    )
