"""`passsync dashboard`: print a one-time login link to the dashboard, on request.

The link carries a code signed with a read token's key, not the token: it works once, for
ten minutes, and opens a read-only session (worker/api/login.py). Next to a running
`passsync run` it uses that stack's port and generated dashboard token.
"""

from __future__ import annotations

import sys
from urllib.parse import urlencode

import typer

from worker.api.login import LINK_SECONDS, LOGIN_PATH, make_code, signing_key
from worker.config import load_settings


def dashboard() -> None:
    """Print a one-time login link to the dashboard (valid once, for ten minutes)."""
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
    _, name, secret = min(readers)  # the `dashboard` token first, else the first by name
    host = settings.api.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    code = make_code("link", name, signing_key(secret), ttl=LINK_SECONDS)
    query = urlencode({"code": code})
    typer.echo(f"http://{host}:{settings.api.port}{LOGIN_PATH}?{query}")
