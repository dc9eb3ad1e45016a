"""The action framework shared by the CLI and the MCP server: provider-neutral.

An action has a name, a description, a strict input model, an output model, a read/write
flag and a function calling the client. Arguments are validated before any call is made.
Each platform defines its own catalogue (name -> Action) in its package and exposes it as
`ProviderKind.actions`; the edges get the account's catalogue from the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)
Catalogue = Mapping[str, "Action[Any, Any]"]


@dataclass(frozen=True)
class Action(Generic[In, Out]):
    """One action: what it takes, what it gives, whether it writes, and how it is done."""

    name: str
    description: str
    input_model: type[In]
    output_model: type[Out]
    writes: bool
    call: Callable[[Any, In], Out]

    def parse(self, arguments: Mapping[str, Any] | None) -> In:
        """The validated input; InvalidArgumentsError names each bad argument."""
        try:
            return self.input_model.model_validate(dict(arguments or {}))
        except ValidationError as exc:
            raise InvalidArgumentsError(self.name, describe_errors(exc)) from None

    def run(self, client: Any, arguments: Mapping[str, Any] | None) -> Out:
        """Validate the arguments, then call the provider (never before they are valid)."""
        return self.call(client, self.parse(arguments))


class UnknownActionError(LookupError):
    """No action has this name."""

    def __init__(self, name: str, known: Catalogue) -> None:
        super().__init__(f"unknown action {name!r}; known: {', '.join(known) or 'none'}")


class InvalidArgumentsError(ValueError):
    """The arguments do not fit the action's input model; `problems` name each argument."""

    def __init__(self, action: str, problems: list[str]) -> None:
        super().__init__(f"invalid arguments for {action}: {'; '.join(problems)}")
        self.action = action
        self.problems = problems


def describe_errors(exc: ValidationError) -> list[str]:
    """`path: message` per pydantic error, e.g. `groups.0.1.operator: Input should be ...`."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        # A validator's own message reads better without pydantic's "Value error, " prefix.
        cause = error.get("ctx", {}).get("error") if error["type"] == "value_error" else None
        problems.append(f"{where}: {cause if cause is not None else error['msg']}")
    return problems


def get_action(catalogue: Catalogue, name: str) -> Action[Any, Any]:
    """The action called `name`; UnknownActionError lists the known ones."""
    try:
        return catalogue[name]
    except KeyError:
        raise UnknownActionError(name, catalogue) from None


def input_schema(action: Action[Any, Any]) -> dict[str, Any]:
    """JSON Schema of what the action accepts (argument names as the caller writes them)."""
    schema: dict[str, Any] = action.input_model.model_json_schema(mode="validation")
    return schema


def output_schema(action: Action[Any, Any]) -> dict[str, Any]:
    """JSON Schema of what the action returns (as serialized with model_dump(mode="json"))."""
    schema: dict[str, Any] = action.output_model.model_json_schema(mode="serialization")
    return schema


def schemas(catalogue: Catalogue, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """name -> {description, writes, input, output} for the named actions (default: all)."""
    chosen = [get_action(catalogue, name) for name in names] if names else list(catalogue.values())
    return {
        a.name: {
            "description": a.description,
            "writes": a.writes,
            "input": input_schema(a),
            "output": output_schema(a),
        }
        for a in chosen
    }
