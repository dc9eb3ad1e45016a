"""The Query Language builder: documented shape (§4.1), encoding (§4.2), validation."""

from __future__ import annotations

import base64
import json

import pytest

from worker.providers.passcreator.query import (
    UNARY,
    Condition,
    Operator,
    PassQuery,
    QueryBuildError,
    decode,
)
from worker.providers.passcreator.sandbox.query import decode_query

TEMPLATE = "5b3f2f9f-0000-4000-8000-000000000001"


def test_the_documented_example_is_built_exactly() -> None:
    # given the reference's example: one group with two conditions, then a second group
    query = (
        PassQuery(template_id=TEMPLATE, project_id="p-1", search_phrase="Ray")
        .where("firstname", Operator.CONTAINS, ["David", "Ray", "Timo"])
        .where("country", "equals", "DE")
        .or_where("tier", Operator.IS_TRUE)
    )
    # when / then: conditions AND inside a group, groups OR, a list value stays a list
    assert query.to_dict() == {
        "templateId": TEMPLATE,
        "projectId": "p-1",
        "searchPhrase": "Ray",
        "groups": [
            [
                {"field": "firstname", "operator": "contains", "value": ["David", "Ray", "Timo"]},
                {"field": "country", "operator": "equals", "value": "DE"},
            ],
            [{"field": "tier", "operator": "isTrue"}],
        ],
    }


def test_encoding_is_base64url_without_padding_of_compact_json() -> None:
    query = PassQuery(template_id=TEMPLATE).where("userProvidedId", "equals", "ü?>")
    encoded = query.encode()
    assert "=" not in encoded
    assert "+" not in encoded and "/" not in encoded
    padded = encoded + "=" * (-len(encoded) % 4)
    text = base64.urlsafe_b64decode(padded).decode()
    assert text == json.dumps(query.to_dict(), separators=(",", ":"), ensure_ascii=False)
    # and the sandbox's decoder (written separately, as the server side) reads it back
    assert decode_query(encoded) == query.to_dict() == decode(encoded)


def test_there_are_exactly_the_fourteen_documented_operators() -> None:
    assert sorted(op.value for op in Operator) == sorted(
        [
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
    )


@pytest.mark.parametrize("operator", sorted(set(Operator) - UNARY))
def test_binary_operators_need_a_value(operator: Operator) -> None:
    assert Condition("f", operator, 1).to_dict() == {
        "field": "f",
        "operator": operator.value,
        "value": 1,
    }
    with pytest.raises(QueryBuildError, match="needs a value"):
        Condition("f", operator)
    with pytest.raises(QueryBuildError, match="needs a value"):
        Condition("f", operator, [])


@pytest.mark.parametrize("operator", sorted(UNARY))
def test_unary_operators_take_no_value(operator: Operator) -> None:
    assert Condition("f", operator).to_dict() == {"field": "f", "operator": operator.value}
    with pytest.raises(QueryBuildError, match="takes no value"):
        Condition("f", operator, "x")


def test_unknown_operator_and_empty_field_are_refused() -> None:
    with pytest.raises(ValueError, match="like"):
        PassQuery().where("f", "like", "x")
    with pytest.raises(QueryBuildError, match="field name"):
        PassQuery().where(" ", "equals", "x")


def test_the_builder_is_immutable() -> None:
    base = PassQuery(template_id=TEMPLATE)
    narrowed = base.where("a", "equals", 1)
    assert base.to_dict() == {"templateId": TEMPLATE}
    assert narrowed.to_dict()["groups"] == [[{"field": "a", "operator": "equals", "value": 1}]]


def test_required_user_provided_ids_only_when_every_group_pins_one() -> None:
    pinned = (
        PassQuery()
        .where("userProvidedId", "equals", "a")
        .where("tier", "equals", "gold")
        .or_where("userProvidedId", "equals", ["b", "c"])
    )
    assert pinned.required_user_provided_ids() == frozenset({"a", "b", "c"})
    loose = PassQuery().where("userProvidedId", "equals", "a").or_where("tier", "equals", "x")
    assert loose.required_user_provided_ids() is None
    assert PassQuery().required_user_provided_ids() is None
    contains = PassQuery().where("userProvidedId", "contains", "a")
    assert contains.required_user_provided_ids() is None


def test_an_empty_query_encodes_an_empty_object() -> None:
    assert PassQuery().to_dict() == {}
    assert decode(PassQuery().encode()) == {}
