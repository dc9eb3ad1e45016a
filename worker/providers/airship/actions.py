"""Airship Wallet's action catalogue for the CLI and MCP (`ProviderKind.actions`).

Inputs are strict (a misspelt or wrongly typed argument is named, never guessed); every
action calls one AirshipClient method, and the write actions are flagged as writes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from worker.actions.inputs import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ActionInput,
    ActionOutput,
    FieldValue,
    Text,
    not_blank,
)
from worker.actions.registry import Action
from worker.providers.airship.client import AirshipClient
from worker.providers.port import ProviderPass, ProviderTemplate

_Input = ActionInput
_Output = ActionOutput


class NoInput(_Input):
    pass


class PassRef(_Input):
    identifier: Text = Field(description="Airship pass id (digits), or the pass's external id.")


class PassIdInput(_Input):
    pass_id: Text


class ListPassesInput(_Input):
    template_id: Text
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT


class CreateInput(_Input):
    template_id: Text = Field(description="Airship template id (see list_templates).")
    external_id: Text
    fields: dict[str, FieldValue] = {}


class UpdateInput(_Input):
    pass_id: Text
    fields: dict[str, FieldValue] = Field(min_length=1)


class MessageInput(_Input):
    pass_id: Text
    message: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(not_blank)]


class StatsInput(_Input):
    external_id: Text


class TemplateList(_Output):
    templates: list[ProviderTemplate]
    count: int


class PassList(_Output):
    """Raw Airship passes, by id; `limit_reached` means more may exist."""

    passes: list[dict[str, Any]]
    count: int
    limit_reached: bool


class Statistics(_Output):
    external_id: str
    total: int
    installed: int
    uninstalled: int


class Deleted(_Output):
    pass_id: str
    deleted: Literal[True] = True


class Sent(_Output):
    pass_id: str
    sent: Literal[True] = True


def _templates(client: AirshipClient, _a: NoInput) -> TemplateList:
    rows = client.list_templates()
    return TemplateList(templates=rows, count=len(rows))


def _get(client: AirshipClient, a: PassRef) -> ProviderPass:
    return client.get_pass(a.identifier)


def _list(client: AirshipClient, a: ListPassesInput) -> PassList:
    rows: list[dict[str, Any]] = []
    for row in client.iter_passes(a.template_id):
        rows.append(row)
        if len(rows) >= a.limit:
            break
    return PassList(passes=rows, count=len(rows), limit_reached=len(rows) >= a.limit)


def _create(client: AirshipClient, a: CreateInput) -> ProviderPass:
    return client.create_pass(
        template_id=a.template_id, user_provided_id=a.external_id, fields=dict(a.fields)
    )


def _update(client: AirshipClient, a: UpdateInput) -> ProviderPass:
    return client.update_pass(a.pass_id, dict(a.fields))


def _delete(client: AirshipClient, a: PassIdInput) -> Deleted:
    client.delete_pass(a.pass_id)
    return Deleted(pass_id=a.pass_id)


def _void(client: AirshipClient, a: PassIdInput) -> ProviderPass:
    return client.set_voided(a.pass_id, True)


def _unvoid(client: AirshipClient, a: PassIdInput) -> ProviderPass:
    return client.set_voided(a.pass_id, False)


def _message(client: AirshipClient, a: MessageInput) -> Sent:
    client.send_push(a.pass_id, a.message)
    return Sent(pass_id=a.pass_id)


def _stats(client: AirshipClient, a: StatsInput) -> Statistics:
    found = client.statistics(a.external_id)
    return Statistics(
        external_id=a.external_id,
        total=found.total,
        installed=found.installed,
        uninstalled=found.uninstalled,
    )


def catalogue() -> dict[str, Action[Any, Any]]:
    """Every Airship action by name."""
    actions: list[Action[Any, Any]] = [
        Action(
            "list_templates", "Templates: names and ids.", NoInput, TemplateList, False, _templates
        ),
        Action(
            "get_pass", "A pass by Airship id or external id.", PassRef, ProviderPass, False, _get
        ),
        Action("list_passes", "A template's passes.", ListPassesInput, PassList, False, _list),
        Action(
            "pass_statistics",
            "Installs and removals of the passes under an external id.",
            StatsInput,
            Statistics,
            False,
            _stats,
        ),
        Action(
            "create_pass",
            "Create a pass on a template under an external id (refused if it is used).",
            CreateInput,
            ProviderPass,
            True,
            _create,
        ),
        Action("update_pass", "Change a pass's fields.", UpdateInput, ProviderPass, True, _update),
        Action("delete_pass", "Delete a pass.", PassIdInput, Deleted, True, _delete),
        Action(
            "void_pass",
            "Void a pass (its expirationDate label 'voided').",
            PassIdInput,
            ProviderPass,
            True,
            _void,
        ),
        Action(
            "unvoid_pass",
            "Make a voided pass valid again.",
            PassIdInput,
            ProviderPass,
            True,
            _unvoid,
        ),
        Action(
            "send_message",
            "Show a message on the pass's lock screen (a changed field's changeMessage).",
            MessageInput,
            Sent,
            True,
            _message,
        ),
    ]
    return {action.name: action for action in actions}
