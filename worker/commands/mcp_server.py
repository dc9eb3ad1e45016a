"""The provider actions as a Model Context Protocol server over stdio (`passsync mcp`).

Tools come from each account's action catalogue, namespaced per account:
`<account>__<action>` (e.g. `coupons__list_passes`), each on that account's own audited
client. Write tools are hidden and refused unless `mcp.allow_writes` is on. Every provider
attempt is audited as `mcp:<client name>` with its account.
Arguments are checked by the strict input models before any call; a bad one gets an error
result naming each argument, so the model can correct itself.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from worker.actions import Action, Catalogue, InvalidArgumentsError, input_schema, output_schema
from worker.audit import Actor, acting_as
from worker.audit.actor import ActorKind
from worker.commands.audited import SetupError, audited_client, catalogue_of, no_credentials
from worker.config import Settings
from worker.providers import registry
from worker.providers.errors import ProviderError, RateLimitedError
from worker.providers.rotation import CredentialReloader

log = logging.getLogger("passsync.mcp")
SERVER_NAME = "passsync"
MCP_KIND: ActorKind = "mcp"
CLIENT_NAME_CHARS = 64
WRITES_OFF = "{name} changes data at the provider and writes are disabled (mcp.allow_writes)"
SEPARATOR = "__"


def tool_name(account: str, action: str) -> str:
    """`<account>__<action>`: letters, digits and underscores, as every MCP client accepts."""
    return f"{account}{SEPARATOR}{action}"


def actor_for(client_name: str | None) -> Actor:
    """`mcp:<client name>` from the client's initialize request, else `mcp:mcp`."""
    name = " ".join((client_name or "").split())[:CLIENT_NAME_CHARS]
    return Actor(MCP_KIND, name or "mcp")


def tool_for(action: Action[Any, Any], account: str, title: str) -> types.Tool:
    """The MCP tool of one account's action: schemas from its models, read/write hints."""
    return types.Tool(
        name=tool_name(account, action.name),
        description=f"[{title} account {account!r}] {action.description}",
        input_schema=input_schema(action),
        output_schema=output_schema(action),
        annotations=types.ToolAnnotations(
            read_only_hint=not action.writes,
            destructive_hint=action.name.startswith(("delete_", "update_", "void_")),
            idempotent_hint=not action.name.startswith("create_"),
            open_world_hint=True,
        ),
    )


@dataclass(frozen=True)
class AccountTools:
    """One account's catalogue and its audited client."""

    account: str
    title: str
    catalogue: Catalogue
    client: Any


class ToolServer:
    """Lists and runs the allowed actions of every account, each on its audited client."""

    def __init__(self, accounts: list[AccountTools], *, allow_writes: bool) -> None:
        self._allow_writes = allow_writes
        self._by_name: dict[str, tuple[AccountTools, Action[Any, Any]]] = {
            tool_name(a.account, action.name): (a, action)
            for a in accounts
            for action in a.catalogue.values()
        }

    def tools(self) -> list[types.Tool]:
        return [
            tool_for(action, owner.account, owner.title)
            for owner, action in self._by_name.values()
            if self._allow_writes or not action.writes
        ]

    async def list_tools(
        self, _ctx: ServerRequestContext[Any, Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools())

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        found = self._by_name.get(params.name)
        if found is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        _owner, action = found
        actor = actor_for(_client_name(ctx))
        if action.writes and not self._allow_writes:
            log.warning("refused %s for %s: writes are disabled", params.name, actor)
            return error_result("writes_disabled", WRITES_OFF.format(name=params.name))
        return await anyio.to_thread.run_sync(self.run, params.name, params.arguments, actor)

    def run(
        self, name: str, arguments: dict[str, Any] | None, actor: Actor
    ) -> types.CallToolResult:
        """Validate, call the account's provider as `actor`, and turn the outcome into a tool
        result."""
        owner, action = self._by_name[name]
        try:
            parsed = action.parse(arguments)
            with acting_as(actor):
                output: BaseModel = action.call(owner.client, parsed)
        except InvalidArgumentsError as exc:
            return error_result("invalid_arguments", str(exc), problems=exc.problems)
        except RateLimitedError as exc:
            return error_result("rate_limited", exc.message, retry_after=exc.retry_after)
        except ProviderError as exc:
            return error_result(type(exc).__name__, exc.message, status=exc.status)
        data = output.model_dump(mode="json")
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(data))], structured_content=data
        )


def error_result(kind: str, message: str, **details: Any) -> types.CallToolResult:
    """A tool error the model can read: the message as text, the details as structure."""
    return types.CallToolResult(
        content=[types.TextContent(text=message)],
        structured_content={"error": kind, "message": message, **details},
        is_error=True,
    )


def _client_name(ctx: ServerRequestContext[Any, Any]) -> str | None:
    params = ctx.session.client_params
    return params.client_info.name if params is not None else None


def build_server(tools: ToolServer) -> Server[Any]:
    return Server(
        SERVER_NAME,
        instructions=(
            "Wallet passes and templates at each configured wallet-platform account, through "
            "passsync; every tool name starts with its account: <account>__<action>."
        ),
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
    )


async def serve_stdio(settings: Settings) -> None:
    """Serve until the client closes stdin; the audited clients (one per account with
    credentials and a catalogue) live as long as the server, and follow credential rotations."""
    reloader = CredentialReloader(settings)  # `passsync accounts rotate` reaches the server
    with ExitStack() as stack:
        accounts, skipped = [], []
        for account in registry.accounts(settings).values():
            catalogue = catalogue_of(settings, account.name)
            if not catalogue:
                skipped.append(f"{account.kind.title} account {account.name!r} has no tools")
            elif not account.has_credentials:
                skipped.append(no_credentials(account))
            else:
                client = stack.enter_context(
                    audited_client(settings, account.name, reloader=reloader)
                )
                accounts.append(AccountTools(account.name, account.kind.title, catalogue, client))
        for reason in skipped:
            log.warning("not served: %s", reason)
        if not accounts:
            raise SetupError("; ".join(skipped))
        server = build_server(ToolServer(accounts, allow_writes=settings.mcp.allow_writes))
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
