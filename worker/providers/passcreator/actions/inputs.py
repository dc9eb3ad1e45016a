"""The input of each action: strict pydantic models, so a bad argument is named, never guessed.

Strict mode refuses "5" for a number and "true" for a flag; `extra="forbid"` refuses an
argument the action does not know (a misspelt `pass_ld` is an error, not silently ignored).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from worker.actions.inputs import (  # noqa: F401 - re-exported for the catalogue
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ActionInput,
    FieldValue,
    Scalar,
    Text,
    not_blank,
)
from worker.providers.passcreator.models import TemplateType
from worker.providers.passcreator.query import UNARY, Operator, PassQuery

# Keys the client sets itself on create; a field of the same name would be dropped silently.
RESERVED_PASS_FIELDS = frozenset({"templateId", "userProvidedId", "enforceUniqueUserProvidedId"})
RESERVED_TEMPLATE_KEYS = frozenset({"name", "type", "description", "organizationName"})
OperatorName = Literal[
    "equals",
    "notEquals",
    "contains",
    "doesNotContain",
    "greaterThan",
    "greaterThanOrEquals",
    "lowerThan",
    "lowerThanOrEquals",
    "beginsWith",
    "endsWith",
    "empty",
    "notEmpty",
    "isTrue",
    "isFalse",
]
PageSize = Annotated[
    int | None, Field(ge=1, le=1000, description="Rows per provider page (default: configured).")
]
Limit = Annotated[
    int, Field(ge=1, le=MAX_LIMIT, description="Return at most this many passes, newest first.")
]


class PassExistsInput(ActionInput):
    identifier: Text
    by: Literal["user_provided_id", "pass_id", "barcode"] = "user_provided_id"


class ListPassesInput(ActionInput):
    template_id: Text | None = None
    page_size: PageSize = None
    limit: Limit = DEFAULT_LIMIT


class SearchPassesInput(ListPassesInput):
    phrase: Text


class ConditionInput(ActionInput):
    """`field operator value`; a list value matches any item; unary operators take none."""

    field: Text
    operator: OperatorName
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> ConditionInput:
        unary = Operator(self.operator) in UNARY
        if unary and self.value is not None:
            raise ValueError(f"{self.operator} takes no value")
        if not unary and self.value in (None, []):
            raise ValueError(f"{self.operator} needs a value")
        return self


class QueryPassesInput(ListPassesInput):
    """Groups are ORed, the conditions inside one group ANDed (Passcreator's Query Language)."""

    project_id: Text | None = None
    search_phrase: Text | None = None
    groups: list[Annotated[list[ConditionInput], Field(min_length=1)]] = Field(
        default=[], max_length=50
    )

    @model_validator(mode="after")
    def _not_empty(self) -> QueryPassesInput:
        if not (self.groups or self.search_phrase or self.template_id or self.project_id):
            raise ValueError("give groups, search_phrase, template_id or project_id")
        return self

    def to_query(self) -> PassQuery:
        """The client's typed query: groups ORed, conditions ANDed."""
        query = PassQuery(self.template_id, self.project_id, self.search_phrase)
        for group in self.groups:
            first, *rest = group
            query = query.or_where(first.field, first.operator, _value(first.value))
            for condition in rest:
                query = query.where(condition.field, condition.operator, _value(condition.value))
        return query


def _value(value: Scalar | list[Scalar] | None) -> Scalar | tuple[Scalar, ...] | None:
    return tuple(value) if isinstance(value, list) else value


class ListTemplatesInput(ActionInput):
    pass


def _no_reserved(reserved: frozenset[str]) -> Any:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(reserved & value.keys())
        if clash:
            raise ValueError(f"{', '.join(clash)} cannot be set here (use the named argument)")
        return value

    return AfterValidator(check)


PassFields = Annotated[dict[str, FieldValue], _no_reserved(RESERVED_PASS_FIELDS)]


class CreatePassInput(ActionInput):
    template_id: Text
    user_provided_id: Text | None = None
    fields: PassFields = Field(default={}, description="Additional properties, by name.")
    barcode_value: Text | None = None
    grouping_identifier: Text | None = None
    enforce_unique: bool = True


class UpdatePassInput(ActionInput):
    pass_id: Text
    fields: Annotated[PassFields, Field(min_length=1)]
    replace: bool = Field(default=False, description="Replace the whole record (drops the rest).")


class DeletePassInput(ActionInput):
    pass_id: Text
    missing_ok: bool = False


class GetPassInput(ActionInput):
    identifier: Text = Field(description="Pass id, userProvidedId or barcode value.")
    include_field_mapping: bool = False


class VoidPassInput(ActionInput):
    pass_id: Text
    voided: bool = Field(default=True, description="False unvoids the pass.")


class GetTemplateInput(ActionInput):
    template_id: Text


class CreateTemplateInput(ActionInput):
    name: Text
    type: TemplateType = "generic"
    description: Text | None = None
    organization_name: Text | None = None
    extra: Annotated[dict[str, Any], _no_reserved(RESERVED_TEMPLATE_KEYS)] = Field(
        default={}, description="Further keys of Passcreator's template JSON, sent as given."
    )


class UpdateTemplateInput(ActionInput):
    template_id: Text
    changes: dict[str, Any] = Field(min_length=1, description="Template keys to change.")
    replace: bool = False
    publish: bool = Field(default=False, description="Push the change to saved passes.")


class DeleteTemplateInput(ActionInput):
    template_id: Text
