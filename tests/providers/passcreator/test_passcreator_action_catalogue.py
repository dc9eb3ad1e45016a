"""Passcreator's action catalogue: names, read/write flags, strict validation, schemas,
argument mapping."""

from __future__ import annotations

from typing import Any

import pytest

from worker.actions import InvalidArgumentsError, UnknownActionError, schemas
from worker.actions import get_action as find_action
from worker.actions.registry import Action
from worker.providers.passcreator.actions import ACTIONS
from worker.providers.passcreator.actions.inputs import QueryPassesInput
from worker.providers.passcreator.models import PassExistence, PassRow, TemplateCreate
from worker.providers.port import ProviderTemplate


def get_action(name: str) -> Action[Any, Any]:
    return find_action(ACTIONS, name)


THIRTEEN = [
    "pass_exists",
    "list_passes",
    "search_passes",
    "query_passes",
    "list_templates",
    "create_pass",
    "update_pass",
    "delete_pass",
    "get_pass",
    "get_template",
    "create_template",
    "update_template",
    "delete_template",
]
WRITES = {
    "create_pass",
    "update_pass",
    "delete_pass",
    "void_pass",
    "create_template",
    "update_template",
    "delete_template",
}


class RecordingClient:
    """Answers like a client and records each call as (method, args, kwargs)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((method, args, kwargs))
            return ANSWERS[method]

        return call


ROW = PassRow(pass_id="p1", user_provided_id="u1")
ANSWERS: dict[str, Any] = {
    "pass_exists": PassExistence(exists=False, identifier="u9", by="user_provided_id"),
    "list_passes": [ROW, ROW],
    "query_passes": [ROW],
    "list_templates": [ProviderTemplate(template_id="t1", name="Loyalty Card")],
    "delete_pass": None,
    "create_pass": None,
    "create_template": {"template_id": "t2"},
}


def test_the_thirteen_actions_and_void_are_registered_with_their_write_flag() -> None:
    assert list(ACTIONS) == [*THIRTEEN, "void_pass"]
    assert {name for name, action in ACTIONS.items() if action.writes} == WRITES


@pytest.mark.parametrize(
    ("name", "arguments", "problem"),
    [
        ("pass_exists", {}, "identifier: Field required"),
        ("pass_exists", {"identifier": "  "}, "identifier: must not be blank"),
        ("pass_exists", {"identifier": "u1", "by": "email"}, "by: Input should be"),
        (
            "get_pass",
            {"identifier": "u1", "include_mapping": True},
            "include_mapping: Extra inputs are not permitted",
        ),
        ("list_passes", {"limit": "5"}, "limit: Input should be a valid integer"),
        ("list_passes", {"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ("create_pass", {"template_id": 7}, "template_id: Input should be a valid string"),
        (
            "create_pass",
            {"template_id": "t1", "fields": {"userProvidedId": "x"}},
            "fields: userProvidedId cannot be set here (use the named argument)",
        ),
        ("create_pass", {"template_id": "t1", "enforce_unique": "no"}, "enforce_unique: Input"),
        (
            "update_pass",
            {"pass_id": "p1", "fields": {}},
            "fields: Value should have at least 1 item",
        ),
        ("delete_pass", {"pass_id": "p1", "missing_ok": 1}, "missing_ok: Input should be a valid"),
        ("query_passes", {}, "arguments: give groups, search_phrase, template_id or project_id"),
        (
            "query_passes",
            {"groups": [[{"field": "tier", "operator": "empty", "value": "x"}]]},
            "groups.0.0: empty takes no value",
        ),
        (
            "query_passes",
            {"groups": [[{"field": "tier", "operator": "equals"}]]},
            "groups.0.0: equals needs a value",
        ),
        (
            "query_passes",
            {"groups": [[{"field": "tier", "operator": "like", "value": "a"}]]},
            "groups.0.0.operator: Input should be 'equals'",
        ),
        ("query_passes", {"groups": [[]]}, "groups.0: List should have at least 1 item"),
        ("create_template", {"name": "n", "type": "flyer"}, "type: Input should be 'coupon'"),
        ("create_template", {"name": "n", "extra": {"name": "m"}}, "extra: name cannot be set"),
        ("update_template", {"template_id": "t1"}, "changes: Field required"),
        ("void_pass", {"pass_id": "p1", "voided": "yes"}, "voided: Input should be a valid"),
    ],
)
def test_invalid_arguments_are_named_precisely_and_nothing_is_called(
    name: str, arguments: dict[str, Any], problem: str
) -> None:
    # given
    client = RecordingClient()
    # when
    with pytest.raises(InvalidArgumentsError) as caught:
        get_action(name).run(client, arguments)  # type: ignore[arg-type]
    # then
    assert caught.value.action == name
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(problem)
    assert str(caught.value).startswith(f"invalid arguments for {name}: {problem}")
    assert client.calls == []


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgumentsError) as caught:
        get_action("create_pass").parse({"user_provided_id": "", "colour": "red"})
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "template_id",
        "user_provided_id",
        "colour",
    ]


def test_an_unknown_action_names_the_known_ones() -> None:
    with pytest.raises(UnknownActionError, match="unknown action 'create_passes'; known: pass_"):
        get_action("create_passes")


def test_create_pass_maps_every_argument_to_the_client() -> None:
    client = RecordingClient()
    arguments = {
        "template_id": "t1",
        "user_provided_id": "u1",
        "fields": {"tier": "gold", "points": 10},
        "barcode_value": "B1",
        "grouping_identifier": "g",
        "enforce_unique": False,
    }
    get_action("create_pass").run(client, arguments)  # type: ignore[arg-type]
    assert client.calls == [("create_pass", (), arguments)]


def test_query_groups_are_ored_and_conditions_anded() -> None:
    parsed = QueryPassesInput.model_validate(
        {
            "template_id": "t1",
            "groups": [
                [{"field": "userProvidedId", "operator": "equals", "value": "u1"}],
                [
                    {"field": "tier", "operator": "equals", "value": ["gold", "silver"]},
                    {"field": "voided", "operator": "isFalse"},
                ],
            ],
        }
    )
    assert parsed.to_query().to_dict() == {
        "templateId": "t1",
        "groups": [
            [{"field": "userProvidedId", "operator": "equals", "value": "u1"}],
            [
                {"field": "tier", "operator": "equals", "value": ["gold", "silver"]},
                {"field": "voided", "operator": "isFalse"},
            ],
        ],
    }


def test_list_outputs_count_rows_and_say_when_the_limit_was_reached() -> None:
    client = RecordingClient()
    full = get_action("list_passes").run(client, {"limit": 2})  # type: ignore[arg-type]
    assert (full.count, full.limit_reached) == (2, True)
    short = get_action("query_passes").run(client, {"search_phrase": "x", "limit": 5})  # type: ignore[arg-type]
    assert (short.count, short.limit_reached) == (1, False)
    assert client.calls[0] == (
        "list_passes",
        (),
        {"template_id": None, "page_size": None, "limit": 2},
    )


def test_deletes_answer_with_what_is_gone() -> None:
    client = RecordingClient()
    output = get_action("delete_pass").run(client, {"pass_id": "p1"})  # type: ignore[arg-type]
    assert output.model_dump() == {"pass_id": "p1", "deleted": True}
    assert client.calls == [("delete_pass", ("p1",), {"missing_ok": False})]


def test_create_template_sends_extra_keys_as_given() -> None:
    client = RecordingClient()
    arguments = {"name": "Promo", "type": "coupon", "extra": {"foregroundColor": "#000"}}
    get_action("create_template").run(client, arguments)  # type: ignore[arg-type]
    (sent,) = client.calls[0][1]
    assert isinstance(sent, TemplateCreate)
    assert sent.to_wire() == {"name": "Promo", "type": "coupon", "foregroundColor": "#000"}


def test_schemas_are_objects_and_inputs_refuse_unknown_arguments() -> None:
    found = schemas(ACTIONS)
    assert list(found) == list(ACTIONS)
    for name, entry in found.items():
        assert entry["writes"] is (name in WRITES)
        assert entry["input"]["type"] == "object"
        assert entry["input"]["additionalProperties"] is False
        assert entry["output"]["type"] == "object"
    assert found["update_pass"]["input"]["required"] == ["pass_id", "fields"]
    assert found["list_passes"]["output"]["required"] == ["passes", "count", "limit_reached"]


def test_schemas_of_named_actions_only() -> None:
    assert list(schemas(ACTIONS, ["get_pass", "delete_template"])) == [
        "get_pass",
        "delete_template",
    ]
    with pytest.raises(UnknownActionError):
        schemas(ACTIONS, ["nope"])
