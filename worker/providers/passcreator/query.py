"""Passcreator's v3 Query Language (reference §4.1) as a typed, immutable builder.

Groups are combined with OR, the conditions inside one group with AND, and a list value
with OR. The query travels base64url-encoded, without padding, in the `query` parameter.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Scalar = str | int | float | bool
Value = Scalar | Sequence[Scalar] | None


class Operator(StrEnum):
    """The fourteen documented operators."""

    EQUALS = "equals"
    NOT_EQUALS = "notEquals"
    CONTAINS = "contains"
    DOES_NOT_CONTAIN = "doesNotContain"
    GREATER_THAN = "greaterThan"
    GREATER_THAN_OR_EQUALS = "greaterThanOrEquals"
    LOWER_THAN = "lowerThan"
    LOWER_THAN_OR_EQUALS = "lowerThanOrEquals"
    BEGINS_WITH = "beginsWith"
    ENDS_WITH = "endsWith"
    EMPTY = "empty"
    NOT_EMPTY = "notEmpty"
    IS_TRUE = "isTrue"
    IS_FALSE = "isFalse"


# These test the field alone; a value sent with them would be meaningless.
UNARY = frozenset({Operator.EMPTY, Operator.NOT_EMPTY, Operator.IS_TRUE, Operator.IS_FALSE})


class QueryBuildError(ValueError):
    """A condition that the Query Language cannot express."""


@dataclass(frozen=True, slots=True)
class Condition:
    """`field operator value`; a list value matches any of its items."""

    field: str
    operator: Operator
    value: Value = None

    def __post_init__(self) -> None:
        if not self.field.strip():
            raise QueryBuildError("a condition needs a field name")
        operator = Operator(self.operator)  # accepts the wire spelling, refuses the unknown
        object.__setattr__(self, "operator", operator)
        if operator in UNARY and self.value is not None:
            raise QueryBuildError(f"{operator.value} takes no value")
        if isinstance(self.value, Sequence) and not isinstance(self.value, str):
            object.__setattr__(self, "value", tuple(self.value))
        if operator not in UNARY and self.value in (None, ()):
            raise QueryBuildError(f"{operator.value} needs a value")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "operator": self.operator.value}
        if self.value is not None:
            out["value"] = list(self.value) if isinstance(self.value, tuple) else self.value
        return out


@dataclass(frozen=True, slots=True)
class PassQuery:
    """A v3 pass query; `where` ANDs into the last group, `or_where` opens a new group."""

    template_id: str | None = None
    project_id: str | None = None
    search_phrase: str | None = None
    groups: tuple[tuple[Condition, ...], ...] = field(default=())

    def where(self, field_name: str, operator: Operator | str, value: Value = None) -> PassQuery:
        condition = Condition(field_name, Operator(operator), value)
        if not self.groups:
            return self._with_groups(((condition,),))
        *before, last = self.groups
        return self._with_groups((*before, (*last, condition)))

    def or_where(self, field_name: str, operator: Operator | str, value: Value = None) -> PassQuery:
        condition = Condition(field_name, Operator(operator), value)
        return self._with_groups((*self.groups, (condition,)))

    def _with_groups(self, groups: tuple[tuple[Condition, ...], ...]) -> PassQuery:
        return PassQuery(self.template_id, self.project_id, self.search_phrase, groups)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.template_id:
            out["templateId"] = self.template_id
        if self.project_id:
            out["projectId"] = self.project_id
        if self.search_phrase:
            out["searchPhrase"] = self.search_phrase
        if self.groups:
            out["groups"] = [[c.to_dict() for c in group] for group in self.groups]
        return out

    def encode(self) -> str:
        """base64url of the compact JSON, without padding (§4.2)."""
        text = json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
        return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")

    def required_user_provided_ids(self) -> frozenset[str] | None:
        """The userProvidedIds every match must have, when each group pins one with `equals`.

        The client re-checks these on the rows it gets back, because a server that ignores a
        filter (as `?userProvidedId=` is ignored, §4.4) would otherwise hand us other passes.
        """
        if not self.groups:
            return None
        allowed: set[str] = set()
        for group in self.groups:
            pinned = [c for c in group if c.field == "userProvidedId" and c.operator == "equals"]
            if not pinned:
                return None
            value = pinned[0].value
            allowed.update(str(v) for v in (value if isinstance(value, tuple) else (value,)))
        return frozenset(allowed)


def decode(raw: str) -> dict[str, Any]:
    """The JSON object inside an encoded `query` (padding optional); for tests and logs."""
    text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    parsed = json.loads(text)
    if not isinstance(parsed, Mapping):
        raise QueryBuildError("query is not a JSON object")
    return dict(parsed)
