"""The rule expression language: parsing, evaluation without coercions, message holes."""

from __future__ import annotations

from typing import Any

import pytest

from worker.expressions import (
    ExpressionError,
    Path,
    evaluate,
    parse,
    parse_message,
    paths,
)

DOC: dict[str, Any] = {
    "id": "e1",
    "type": "order.completed",
    "customer": {
        "id": "c1",
        "first_name": "Ada",
        "email": None,
        "attributes": {"tier": "gold", "orders_count": 1, "tags": ["vip", "beta"], "active": True},
    },
    "data": {"total": 12.5, "zero": 0},
}


def value(source: str) -> Any:
    return evaluate(parse(source), DOC)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("customer.first_name", "Ada"),
        ("customer.attributes.orders_count", 1),
        ("customer.attributes.missing", None),
        ("customer.first_name.deeper", None),
        ("data.total", 12.5),
        ("'say \\'hi\\''", "say 'hi'"),
    ],
)
def test_paths_read_the_event_and_missing_steps_are_null(source: str, expected: Any) -> None:
    assert value(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("customer.attributes.orders_count == 1", True),
        ("customer.attributes.orders_count == '1'", False),  # no string/number coercion
        ("customer.attributes.active == 1", False),  # true is not 1
        ("customer.attributes.active == true", True),
        ("data.total == 12.5", True),
        ("customer.attributes.orders_count != 2", True),
        ("customer.attributes.orders_count >= 2", False),
        ("customer.attributes.missing >= 2", False),  # null is never ordered
        ("customer.attributes.missing < 2", False),
        ("'b' > 'a'", True),
        ("'b' > 1", False),
        ("-1 < 0", True),
        ("customer.attributes.tier in ['gold', 'platinum']", True),
        ("customer.attributes.tier not in ['gold', 'platinum']", False),
        ("'vip' in customer.attributes.tags", True),
        ("'Ad' in customer.first_name", True),
        ("'tier' in customer.attributes", True),
        ("'x' in customer.attributes.missing", False),
        ("customer.email == null", True),
    ],
)
def test_comparisons_do_not_coerce(source: str, expected: bool) -> None:
    assert value(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("customer.attributes.missing ?? 'basic'", "basic"),
        ("customer.attributes.tier ?? 'basic'", "gold"),
        ("data.zero ?? 5", 0),  # only null falls back, not a falsy value
        ("customer.email ?? customer.first_name ?? 'x'", "Ada"),
        ("customer.attributes.missing ?? 'basic' == 'basic'", True),  # ?? binds tighter
    ],
)
def test_default_operator_replaces_only_null(source: str, expected: Any) -> None:
    assert value(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("not customer.email", True),
        ("not data.total > 100", True),  # not applies to the comparison
        ("customer.first_name and data.zero", False),
        ("customer.attributes.tags or false", True),
    ],
)
def test_boolean_operators_follow_their_precedence(source: str, expected: bool) -> None:
    assert value(source) is expected


def test_dictionary_methods_are_not_reachable_as_paths() -> None:
    # A path indexes dictionaries only: "items" is a missing key, never dict.items.
    assert value("customer.attributes.items") is None
    assert value("customer.__class__") is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("customer.tier ==", "expected a value at position 17, found the end"),
        ("a b", "expected an operator or the end at position 3, found 'b'"),
        ("a == 1 == 2", "comparisons cannot be chained"),
        ("(a", "expected ')' at position 3, found the end"),
        ("a.", "expected a field name after '.' at position 3"),
        ("a ! b", "unexpected '!' at position 3"),
        ("and", "expected a value at position 1, found 'and'"),
        ("   ", "empty expression"),
        ("__import__('os')", "expected an operator or the end at position 11"),
    ],
)
def test_syntax_errors_say_what_and_where(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(source)


def test_paths_lists_every_path_read() -> None:
    found = list(paths(parse("a.b == 1 and not c ?? [d.e, 2]")))
    assert found == [Path(("a", "b")), Path(("c",)), Path(("d", "e"))]


def test_message_holes_are_rendered_and_braces_escaped() -> None:
    message = parse_message("Hi {customer.first_name}, {{tier}}: {customer.attributes.tier}!")
    assert message.render(DOC) == "Hi Ada, {tier}: gold!"


def test_message_renders_null_empty_and_booleans_lower_case() -> None:
    message = parse_message("[{customer.email}] {customer.attributes.active} {data.total}")
    assert message.render(DOC) == "[] true 12.5"


def test_message_hole_may_hold_a_brace_inside_a_string() -> None:
    assert parse_message("{customer.email ?? '}'}").render(DOC) == "}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Hi {customer.first_name", "is never closed"),
        ("Hi }", "without"),
        ("Hi {customer.first_name ==}", "in '{customer.first_name ==}' at position 4"),
    ],
)
def test_bad_messages_are_refused(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("{", r"\{").replace("}", r"\}")):
        parse_message(source)
