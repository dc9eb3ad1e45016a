"""The sandbox, audit database and environment fixtures of the CLI and MCP tests."""

from tests.actions.fixtures import _actions_db, _actions_sandbox, provider

__all__ = ["_actions_db", "_actions_sandbox", "provider"]
