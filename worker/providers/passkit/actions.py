"""PassKit's action catalogue for the CLI and MCP (`ProviderKind.actions`).

Inputs are strict (a misspelt or wrongly typed argument is named, never guessed); every
action calls one PassKitClient method, and the write actions are flagged as writes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

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
from worker.providers.passkit.client import PassKitClient
from worker.providers.port import ProviderPass, ProviderTemplate

Points = Annotated[float, Field(ge=0, allow_inf_nan=False)]


_Input = ActionInput
_Output = ActionOutput


class NoInput(_Input):
    pass


class MemberRef(_Input):
    """A member by its PassKit id, or by external id (and the template it is in)."""

    identifier: Text = Field(description="PassKit member id, or the member's externalId.")
    template_id: str | None = Field(
        default=None, description="'<programId>/<tierId>' to look an externalId up in."
    )


class ListMembersInput(_Input):
    program_id: Text
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    page_size: Annotated[int | None, Field(ge=1, le=1000)] = None


class ProgramInput(_Input):
    program_id: Text


class EnrolInput(_Input):
    template_id: Text = Field(description="'<programId>/<tierId>' (see list_templates).")
    external_id: Text
    fields: dict[str, FieldValue] = {}


class UpdateInput(_Input):
    member_id: Text
    fields: dict[str, FieldValue] = Field(min_length=1)


class MemberIdInput(_Input):
    member_id: Text


class PointsInput(_Input):
    member_id: Text
    points: Points


class SetPointsInput(_Input):
    member_id: Text
    points: Points | None = None
    secondary_points: Points | None = None
    tier_points: Annotated[int | None, Field(ge=0)] = None

    @model_validator(mode="after")
    def _something(self) -> SetPointsInput:
        if self.points is None and self.secondary_points is None and self.tier_points is None:
            raise ValueError("give points, secondary_points or tier_points")
        return self


class MessageInput(_Input):
    member_id: Text
    message: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(not_blank)]


class TemplateList(_Output):
    templates: list[ProviderTemplate]
    count: int


class MemberList(_Output):
    """Raw PassKit members, oldest first; `limit_reached` means more may exist."""

    members: list[dict[str, Any]]
    count: int
    limit_reached: bool


class Count(_Output):
    program_id: str
    total: int


class Balance(_Output):
    member_id: str
    points: float
    secondary_points: float
    tier_points: int


class Deleted(_Output):
    member_id: str
    deleted: Literal[True] = True


class Sent(_Output):
    member_id: str
    sent: Literal[True] = True


def _templates(client: PassKitClient, _a: NoInput) -> TemplateList:
    rows = client.list_templates()
    return TemplateList(templates=rows, count=len(rows))


def _get(client: PassKitClient, a: MemberRef) -> ProviderPass:
    return client.get_pass(a.identifier, template_id=a.template_id)


def _list(client: PassKitClient, a: ListMembersInput) -> MemberList:
    rows: list[dict[str, Any]] = []
    for row in client.iter_members(a.program_id, page_size=a.page_size):
        rows.append(row)
        if len(rows) >= a.limit:
            break
    return MemberList(members=rows, count=len(rows), limit_reached=len(rows) >= a.limit)


def _count(client: PassKitClient, a: ProgramInput) -> Count:
    return Count(program_id=a.program_id, total=client.count_members(a.program_id))


def _enrol(client: PassKitClient, a: EnrolInput) -> ProviderPass:
    return client.create_pass(
        template_id=a.template_id, user_provided_id=a.external_id, fields=dict(a.fields)
    )


def _update(client: PassKitClient, a: UpdateInput) -> ProviderPass:
    return client.update_pass(a.member_id, dict(a.fields))


def _delete(client: PassKitClient, a: MemberIdInput) -> Deleted:
    client.delete_pass(a.member_id)
    return Deleted(member_id=a.member_id)


def _balance(member_id: str, answer: Any) -> Balance:
    return Balance(
        member_id=member_id,
        points=answer.points,
        secondary_points=answer.secondaryPoints,
        tier_points=answer.tierPoints,
    )


def _earn(client: PassKitClient, a: PointsInput) -> Balance:
    return _balance(a.member_id, client.earn_points(a.member_id, a.points))


def _burn(client: PassKitClient, a: PointsInput) -> Balance:
    return _balance(a.member_id, client.burn_points(a.member_id, a.points))


def _set(client: PassKitClient, a: SetPointsInput) -> Balance:
    answer = client.set_points(
        a.member_id, points=a.points, secondaryPoints=a.secondary_points, tierPoints=a.tier_points
    )
    return _balance(a.member_id, answer)


def _void(client: PassKitClient, a: MemberIdInput) -> ProviderPass:
    return client.set_voided(a.member_id, True)


def _unvoid(client: PassKitClient, a: MemberIdInput) -> ProviderPass:
    return client.set_voided(a.member_id, False)


def _message(client: PassKitClient, a: MessageInput) -> Sent:
    client.send_push(a.member_id, a.message)
    return Sent(member_id=a.member_id)


def catalogue() -> dict[str, Action[Any, Any]]:
    """Every PassKit action by name."""
    actions: list[Action[Any, Any]] = [
        Action(
            "list_templates",
            "Programs and tiers, as template names and ids.",
            NoInput,
            TemplateList,
            False,
            _templates,
        ),
        Action(
            "get_member",
            "A member by PassKit id or externalId.",
            MemberRef,
            ProviderPass,
            False,
            _get,
        ),
        Action(
            "list_members",
            "A program's members, oldest first.",
            ListMembersInput,
            MemberList,
            False,
            _list,
        ),
        Action(
            "count_members", "How many members a program has.", ProgramInput, Count, False, _count
        ),
        Action(
            "enrol_member",
            "Enrol a member (refused if the externalId is used).",
            EnrolInput,
            ProviderPass,
            True,
            _enrol,
        ),
        Action(
            "update_member",
            "Change a member's fields (0, '' and false included).",
            UpdateInput,
            ProviderPass,
            True,
            _update,
        ),
        Action("delete_member", "Delete a member.", MemberIdInput, Deleted, True, _delete),
        Action("earn_points", "Add points to a member.", PointsInput, Balance, True, _earn),
        Action("burn_points", "Take points from a member.", PointsInput, Balance, True, _burn),
        Action(
            "set_points", "Set a member's balances (0 resets).", SetPointsInput, Balance, True, _set
        ),
        Action(
            "void_member",
            "Expire a member's pass now (the barcode greys out).",
            MemberIdInput,
            ProviderPass,
            True,
            _void,
        ),
        Action(
            "unvoid_member",
            "Reactivate an expired member's pass.",
            MemberIdInput,
            ProviderPass,
            True,
            _unvoid,
        ),
        Action(
            "send_message", "Send a message to a member's pass.", MessageInput, Sent, True, _message
        ),
    ]
    return {action.name: action for action in actions}
