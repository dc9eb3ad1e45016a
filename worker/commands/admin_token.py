"""The one admin-token rule of the command line.

Every command that changes something (in passsync's ledgers or at the provider) needs
`PASSSYNC_TOKEN` set to the secret of an admin token (`admin_tokens` in config.yaml, secret in
`PASSSYNC_ADMIN_TOKENS__<NAME>__SECRET`) that has the write scope: the same tokens and scopes
as the admin API. The change is recorded as that token's name. Commands that only read need
no token. Next to a running `passsync run`, an unset PASSSYNC_TOKEN is its generated `ops`
token (see worker.commands.attach).
"""

from __future__ import annotations

import os
import sys
from typing import Literal, NoReturn

import typer

from worker.config import Settings

TOKEN_ENV = "PASSSYNC_TOKEN"  # noqa: S105 - the variable's name, not a secret

Scope = Literal["read", "write"]


def require_token(settings: Settings, scope: Scope = "write") -> str:
    """The admin token's name; exit 2 with one line when PASSSYNC_TOKEN is missing, wrong,
    or lacks `scope`."""
    from worker.api.auth import AdminAuth  # noqa: PLC0415 - only this check needs it

    presented = os.environ.get(TOKEN_ENV, "")
    configured = [n for n, t in settings.admin_tokens.items() if t.secret is not None]
    if not configured:
        _refuse(
            "no admin token is configured: set PASSSYNC_ADMIN_TOKENS__OPS__SECRET (scopes in "
            f"admin_tokens in config.yaml), then export {TOKEN_ENV} with the same value"
        )
    if not presented:
        _refuse(
            f"this command changes state and needs an admin token: export {TOKEN_ENV} with the "
            f"secret of a token with the {scope} scope (one of: {', '.join(configured)})"
        )
    principal = AdminAuth(settings.admin_tokens).authenticate(presented)
    if principal is None:
        _refuse(f"wrong token: {TOKEN_ENV} matches none of the admin tokens")
    if scope not in principal.scopes:
        _refuse(f"token {principal.name} lacks the {scope} scope")
    return principal.name


def _refuse(message: str) -> NoReturn:
    sys.stderr.write(f"passsync: {message}\n")
    raise typer.Exit(2)
