"""The provider-neutral action framework: strict inputs, typed outputs, for CLI and MCP."""

from worker.actions.registry import (
    Action,
    Catalogue,
    InvalidArgumentsError,
    UnknownActionError,
    get_action,
    input_schema,
    output_schema,
    schemas,
)

__all__ = [
    "Action",
    "Catalogue",
    "InvalidArgumentsError",
    "UnknownActionError",
    "get_action",
    "input_schema",
    "output_schema",
    "schemas",
]
