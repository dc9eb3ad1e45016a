"""Passcreator's action catalogue for the CLI and MCP (`ProviderKind.actions`)."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from worker.actions.registry import Action
from worker.providers.passcreator.actions import inputs as i
from worker.providers.passcreator.actions import outputs as o
from worker.providers.passcreator.models import (
    PassDetails,
    PassExistence,
    PassRow,
    PassWriteResult,
    TemplateCreate,
    TemplateDetails,
    TemplateWriteResult,
)
from worker.providers.passcreator.query import PassQuery
from worker.providers.port import ProviderPass, ProviderTemplate


class ActionClient(Protocol):
    """The client calls the actions make (PasscreatorClient has them all)."""

    def pass_exists(
        self, identifier: str, *, by: Literal["user_provided_id", "pass_id", "barcode"] = ...
    ) -> PassExistence: ...
    def list_passes(
        self, *, template_id: str | None = ..., page_size: int | None = ..., limit: int | None = ...
    ) -> list[PassRow]: ...
    def search_passes(
        self,
        phrase: str,
        *,
        template_id: str | None = ...,
        page_size: int | None = ...,
        limit: int | None = ...,
    ) -> list[PassRow]: ...
    def query_passes(
        self, query: PassQuery, *, page_size: int | None = ..., limit: int | None = ...
    ) -> list[PassRow]: ...
    def list_templates(self) -> list[ProviderTemplate]: ...
    def create_pass(
        self,
        *,
        template_id: str,
        user_provided_id: str | None,
        fields: dict[str, Any],
        barcode_value: str | None = ...,
        grouping_identifier: str | None = ...,
        enforce_unique: bool = ...,
    ) -> PassWriteResult: ...
    def update_pass(
        self, pass_id: str, fields: dict[str, Any], *, replace: bool = ...
    ) -> PassWriteResult: ...
    def delete_pass(self, pass_id: str, *, missing_ok: bool = ...) -> None: ...
    def get_pass(self, identifier: str, *, include_field_mapping: bool = ...) -> PassDetails: ...
    def set_voided(self, pass_id: str, voided: bool) -> ProviderPass: ...
    def get_template(self, template_id: str) -> TemplateDetails: ...
    def create_template(self, template: TemplateCreate) -> TemplateWriteResult: ...
    def update_template(
        self, template_id: str, changes: dict[str, Any], *, replace: bool = ..., publish: bool = ...
    ) -> TemplateWriteResult: ...
    def delete_template(self, template_id: str) -> None: ...


def _rows(rows: list[PassRow], limit: int) -> o.PassList:
    return o.PassList(passes=rows, count=len(rows), limit_reached=len(rows) >= limit)


def _exists(client: ActionClient, a: i.PassExistsInput) -> PassExistence:
    return client.pass_exists(a.identifier, by=a.by)


def _list(client: ActionClient, a: i.ListPassesInput) -> o.PassList:
    rows = client.list_passes(template_id=a.template_id, page_size=a.page_size, limit=a.limit)
    return _rows(rows, a.limit)


def _search(client: ActionClient, a: i.SearchPassesInput) -> o.PassList:
    rows = client.search_passes(
        a.phrase, template_id=a.template_id, page_size=a.page_size, limit=a.limit
    )
    return _rows(rows, a.limit)


def _query(client: ActionClient, a: i.QueryPassesInput) -> o.PassList:
    rows = client.query_passes(a.to_query(), page_size=a.page_size, limit=a.limit)
    return _rows(rows, a.limit)


def _templates(client: ActionClient, _a: i.ListTemplatesInput) -> o.TemplateList:
    found = client.list_templates()
    return o.TemplateList(templates=found, count=len(found))


def _create(client: ActionClient, a: i.CreatePassInput) -> PassWriteResult:
    return client.create_pass(
        template_id=a.template_id,
        user_provided_id=a.user_provided_id,
        fields=dict(a.fields),
        barcode_value=a.barcode_value,
        grouping_identifier=a.grouping_identifier,
        enforce_unique=a.enforce_unique,
    )


def _update(client: ActionClient, a: i.UpdatePassInput) -> PassWriteResult:
    return client.update_pass(a.pass_id, dict(a.fields), replace=a.replace)


def _delete(client: ActionClient, a: i.DeletePassInput) -> o.PassDeleted:
    client.delete_pass(a.pass_id, missing_ok=a.missing_ok)
    return o.PassDeleted(pass_id=a.pass_id)


def _get(client: ActionClient, a: i.GetPassInput) -> PassDetails:
    return client.get_pass(a.identifier, include_field_mapping=a.include_field_mapping)


def _void(client: ActionClient, a: i.VoidPassInput) -> ProviderPass:
    return client.set_voided(a.pass_id, a.voided)


def _get_template(client: ActionClient, a: i.GetTemplateInput) -> TemplateDetails:
    return client.get_template(a.template_id)


def _create_template(client: ActionClient, a: i.CreateTemplateInput) -> TemplateWriteResult:
    body = TemplateCreate(
        name=a.name,
        type=a.type,
        description=a.description,
        organization_name=a.organization_name,
        **a.extra,
    )
    return client.create_template(body)


def _update_template(client: ActionClient, a: i.UpdateTemplateInput) -> TemplateWriteResult:
    return client.update_template(
        a.template_id, dict(a.changes), replace=a.replace, publish=a.publish
    )


def _delete_template(client: ActionClient, a: i.DeleteTemplateInput) -> o.TemplateDeleted:
    client.delete_template(a.template_id)
    return o.TemplateDeleted(template_id=a.template_id)


_ALL: tuple[Action[Any, Any], ...] = (
    Action(
        "pass_exists",
        "Whether a pass exists for a userProvidedId, pass id or barcode value, and which one.",
        i.PassExistsInput,
        PassExistence,
        False,
        _exists,
    ),
    Action(
        "list_passes",
        "Passes (optionally of one template), newest first, up to `limit`.",
        i.ListPassesInput,
        o.PassList,
        False,
        _list,
    ),
    Action(
        "search_passes",
        "Passes whose data contains a phrase, newest first, up to `limit`.",
        i.SearchPassesInput,
        o.PassList,
        False,
        _search,
    ),
    Action(
        "query_passes",
        "Passes matching a Query Language query: groups are ORed, conditions in a group ANDed.",
        i.QueryPassesInput,
        o.PassList,
        False,
        _query,
    ),
    Action(
        "list_templates",
        "The pass templates the API key may see (id and name).",
        i.ListTemplatesInput,
        o.TemplateList,
        False,
        _templates,
    ),
    Action(
        "create_pass",
        "Create a pass from a template; with a userProvidedId a second create is refused.",
        i.CreatePassInput,
        PassWriteResult,
        True,
        _create,
    ),
    Action(
        "update_pass",
        "Change a pass's fields: merged by default, the whole record with replace=true.",
        i.UpdatePassInput,
        PassWriteResult,
        True,
        _update,
    ),
    Action(
        "delete_pass",
        "Delete a pass for good (not found is an error unless missing_ok).",
        i.DeletePassInput,
        o.PassDeleted,
        True,
        _delete,
    ),
    Action(
        "get_pass",
        "A pass's details by pass id, userProvidedId or barcode value.",
        i.GetPassInput,
        PassDetails,
        False,
        _get,
    ),
    Action(
        "get_template",
        "A template's description and its fields.",
        i.GetTemplateInput,
        TemplateDetails,
        False,
        _get_template,
    ),
    Action(
        "create_template",
        "Create a pass template.",
        i.CreateTemplateInput,
        TemplateWriteResult,
        True,
        _create_template,
    ),
    Action(
        "update_template",
        "Change a template (merged by default); publish=true pushes it to saved passes.",
        i.UpdateTemplateInput,
        TemplateWriteResult,
        True,
        _update_template,
    ),
    Action(
        "delete_template",
        "Delete a template.",
        i.DeleteTemplateInput,
        o.TemplateDeleted,
        True,
        _delete_template,
    ),
    Action(
        "void_pass",
        "Void a pass (voided=false unvoids it); a voided pass shows as no longer valid.",
        i.VoidPassInput,
        ProviderPass,
        True,
        _void,
    ),
)
ACTIONS: dict[str, Action[Any, Any]] = {action.name: action for action in _ALL}


def catalogue() -> dict[str, Action[Any, Any]]:
    return ACTIONS
