"""`passsync mcp`: serve the provider actions to an agent over stdio (Model Context Protocol)."""

from __future__ import annotations

import logging

import anyio

from worker.commands.actions_cli import fail
from worker.commands.audited import SetupError
from worker.config import ConfigError, load_settings


def mcp() -> None:
    """Serve the provider actions as MCP tools over stdio; read-only unless mcp.allow_writes.
    Every provider call is audited as mcp:<client name>."""
    # The MCP SDK is loaded only by this command.
    from worker.commands.mcp_server import serve_stdio  # noqa: PLC0415

    try:
        settings = load_settings()
        # stdout carries the protocol: logs go to stderr, which basicConfig uses.
        logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s %(message)s")
        # One INFO line per HTTP request would bury the agent host's log; the audit has them.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        anyio.run(serve_stdio, settings)
    except (SetupError, ConfigError) as exc:
        fail(str(exc))
