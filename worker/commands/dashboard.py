"""`passsync dashboard`: print the dashboard's login link (with a read token), on request.

The link carries a token, so it is printed only when asked for, never in a banner or log.
Next to a running `passsync run` it uses that stack's port and generated dashboard token.
"""

from __future__ import annotations

import sys
from urllib.parse import urlencode

import typer

from worker.config import load_settings


def dashboard() -> None:
    """Print the dashboard's login link (it carries a read token: keep it to yourself)."""
    settings = load_settings()
    readers = [
        (name != "dashboard", name, token.secret.get_secret_value())
        for name, token in settings.admin_tokens.items()
        if token.secret is not None and "read" in token.scopes
    ]
    if not readers:
        sys.stderr.write(
            "passsync: no admin token with the read scope has a secret: set "
            "PASSSYNC_ADMIN_TOKENS__DASHBOARD__SECRET (or start `passsync run`, which makes one)\n"
        )
        raise typer.Exit(2)
    _, _, secret = min(readers)  # the `dashboard` token first, else the first by name
    host = settings.api.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    query = urlencode({"token": secret})
    typer.echo(f"http://{host}:{settings.api.port}/dashboard?{query}")
