"""The provider actions as data: strict inputs, typed outputs, one registry for CLI and MCP."""

from worker.actions.registry import (
    ACTIONS,
    Action,
    ActionClient,
    InvalidArgumentsError,
    UnknownActionError,
    get_action,
    schemas,
)

__all__ = [
    "ACTIONS",
    "Action",
    "ActionClient",
    "InvalidArgumentsError",
    "UnknownActionError",
    "get_action",
    "schemas",
]
