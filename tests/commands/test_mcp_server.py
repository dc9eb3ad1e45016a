"""`passsync mcp` as a subprocess, driven by the MCP SDK's stdio client against the sandbox."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, Implementation
from pydantic import SecretStr
from typer.testing import CliRunner

from tests.actions.fixtures import LOYALTY, SANDBOX_KEY, Provider
from worker.cli import app
from worker.commands.mcp_server import actor_for
from worker.providers.passcreator.actions import ACTIONS
from worker.providers.passcreator.client import PasscreatorClient
from worker.providers.passcreator.settings import PasscreatorSettings

CLIENT = "passsync-test"
ACTOR = f"mcp:{CLIENT}"
READS = [name for name, action in ACTIONS.items() if not action.writes]
NS = "passcreator__"  # tools are namespaced per account: <account>__<action>
REPO = Path(__file__).resolve().parents[2]

Session = Callable[[ClientSession], Awaitable[None]]


def serve(provider: Provider, tmp_path: Path, body: Session, *, allow_writes: bool) -> None:
    """Start `passsync mcp` with the sandbox configured and run `body` against it."""
    env = {
        **provider.env(),
        "PASSSYNC_CONFIG": os.environ["PASSSYNC_CONFIG"],  # the test's empty config
        "PASSSYNC_MCP__ALLOW_WRITES": "true" if allow_writes else "false",
        "PYTHONPATH": str(REPO),
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "worker.cli", "mcp"], env=env, cwd=str(tmp_path)
    )

    async def main() -> None:
        with (tmp_path / "mcp-stderr.log").open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(
                    read,
                    write,
                    read_timeout_seconds=30,
                    client_info=Implementation(name=CLIENT, version="1"),
                ) as session,
            ):
                await session.initialize()
                await body(session)

    anyio.run(main)


async def call(session: ClientSession, name: str, /, **arguments: Any) -> CallToolResult:
    result = await session.call_tool(NS + name, arguments)
    assert isinstance(result, CallToolResult)
    return result


def ok(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error is False, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def seed(provider: Provider) -> str:
    """One pass made directly (not through the server), then an empty audit log."""
    settings = PasscreatorSettings(
        base_url=provider.sandbox.base_url, api_key=SecretStr(SANDBOX_KEY)
    )
    with PasscreatorClient(settings) as client:
        made = client.create_pass(
            template_id=LOYALTY, user_provided_id="u1", fields={"firstName": "Ada"}
        )
    provider.clear_audit()
    return made.pass_id


def test_read_only_server_lists_and_runs_the_read_tools_and_refuses_writes(
    provider: Provider, tmp_path: Path
) -> None:
    pass_id = seed(provider)
    seen: dict[str, Any] = {}

    async def body(session: ClientSession) -> None:
        tools = await session.list_tools()
        seen["tools"] = [tool.name for tool in tools.tools]
        seen["pass_exists"] = ok(await call(session, "pass_exists", identifier="u1"))
        seen["list_passes"] = ok(await call(session, "list_passes"))
        seen["search_passes"] = ok(await call(session, "search_passes", phrase="Ada"))
        groups = [[{"field": "firstName", "operator": "equals", "value": "Ada"}]]
        seen["query_passes"] = ok(await call(session, "query_passes", groups=groups))
        seen["list_templates"] = ok(await call(session, "list_templates"))
        seen["get_pass"] = ok(await call(session, "get_pass", identifier=pass_id))
        seen["get_template"] = ok(await call(session, "get_template", template_id=LOYALTY))
        seen["refused"] = await call(session, "delete_pass", pass_id=pass_id)
        seen["invalid"] = await call(session, "get_pass", identifier=7, extra=True)
        with pytest.raises(MCPError, match="unknown tool 'drop_everything'"):
            await session.call_tool("drop_everything", {})

    serve(provider, tmp_path, body, allow_writes=False)

    assert seen["tools"] == [NS + name for name in READS]
    assert seen["pass_exists"]["pass_id"] == pass_id
    for listing in ("list_passes", "search_passes", "query_passes"):
        assert [row["pass_id"] for row in seen[listing]["passes"]] == [pass_id]
    assert seen["list_templates"]["count"] == 3
    assert seen["get_pass"]["fields"] == {"firstName": "Ada"}
    assert seen["get_template"]["name"] == "Loyalty Card"
    refused = seen["refused"]
    assert refused.is_error is True
    assert refused.structured_content["error"] == "writes_disabled"
    assert refused.content[0].text == (
        "passcreator__delete_pass changes data at the provider and writes are disabled "
        "(mcp.allow_writes)"
    )
    invalid = seen["invalid"]
    assert invalid.is_error is True
    assert invalid.structured_content["problems"] == [
        "identifier: Input should be a valid string",
        "extra: Extra inputs are not permitted",
    ]
    # the refused and invalid calls sent nothing; every call that did is audited as mcp:<client>
    assert [p["deleted"] for p in provider.sandbox.passes()] == [False]
    assert [(action, actor) for action, actor, _, _ in provider.audit()] == [
        (name, ACTOR) for name in READS
    ]


def test_with_writes_enabled_every_write_tool_works_and_is_audited(
    provider: Provider, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    async def body(session: ClientSession) -> None:
        seen["tools"] = [tool.name for tool in (await session.list_tools()).tools]
        made = ok(await call(session, "create_pass", template_id=LOYALTY, user_provided_id="m1"))
        pid = made["pass_id"]
        seen["update"] = ok(
            await call(session, "update_pass", pass_id=pid, fields={"tier": "gold"})
        )
        seen["void"] = ok(await call(session, "void_pass", pass_id=pid))
        seen["stored"] = provider.sandbox.passes()
        seen["delete"] = ok(await call(session, "delete_pass", pass_id=pid))
        template = ok(await call(session, "create_template", name="Promo", type="coupon"))
        tid = template["template_id"]
        changes = {"description": "changed"}
        ok(await call(session, "update_template", template_id=tid, changes=changes))
        seen["template"] = ok(await call(session, "get_template", template_id=tid))
        seen["template_deleted"] = ok(await call(session, "delete_template", template_id=tid))
        seen["pid"], seen["tid"] = pid, tid

    serve(provider, tmp_path, body, allow_writes=True)

    assert seen["tools"] == [NS + name for name in ACTIONS]
    assert seen["update"]["fields"] == {"tier": "gold"}
    assert seen["void"]["voided"] is True
    (stored,) = seen["stored"]
    assert (stored["userProvidedId"], stored["fields"], stored["voided"]) == (
        "m1",
        {"tier": "gold"},
        True,
    )
    assert seen["delete"] == {"pass_id": seen["pid"], "deleted": True}
    assert [p["deleted"] for p in provider.sandbox.passes()] == [True]
    assert seen["template"]["description"] == "changed"
    assert seen["template_deleted"] == {"template_id": seen["tid"], "deleted": True}
    assert [(action, actor) for action, actor, _, _ in provider.audit()] == [
        (name, ACTOR)
        for name in (
            "create_pass",
            "update_pass",
            "void_pass",
            "delete_pass",
            "create_template",
            "update_template",
            "get_template",
            "delete_template",
        )
    ]


def test_without_an_api_key_the_server_does_not_start(
    provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY")
    # (a base URL without a key is a configuration error of its own: tests/test_config_environment)
    monkeypatch.delenv("PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL", raising=False)
    result = CliRunner().invoke(app, ["mcp"])
    assert result.exit_code == 2
    assert result.stderr.startswith("passsync: no credentials for account 'passcreator'")
    assert provider.sandbox.stats()["calls"] == {}


@pytest.mark.parametrize(
    ("name", "actor"),
    [("Claude Desktop", "mcp:Claude Desktop"), (None, "mcp:mcp"), ("  ", "mcp:mcp")],
)
def test_the_actor_is_the_client_name(name: str | None, actor: str) -> None:
    assert str(actor_for(name)) == actor


def test_a_long_client_name_is_clipped() -> None:
    assert actor_for("x" * 300).id == "x" * 64
