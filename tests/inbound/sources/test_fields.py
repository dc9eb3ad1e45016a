"""Mapping transforms and compiled fields: the edge cases senders' values bring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from worker.inbound.sources.fields import TRANSFORMS, compile_field
from worker.inbound.sources.spec import FieldSpec


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("string", 115310627314723954, "115310627314723954"),
        ("string", 12.0, "12"),
        ("string", True, "true"),
        ("string", {"a": 1}, None),
        ("first_word", "  Jenny van Rosen ", "Jenny"),
        ("last_words", "Jenny van Rosen", "van Rosen"),
        ("last_words", "Cher", None),
        ("number", "403.00", 403.0),
        ("number", "n/a", None),
        ("number", True, None),
        ("cents", 1999, 19.99),
        ("cents", 10**400, None),
        ("empty_is_null", "", None),
        ("lower", 5, 5),
        ("unix_s", 1795168800, datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("unix_ms", "1795168800000", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("time", 1795168800000, datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("time", "2026-11-20 10:00:00", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("iso8601", "yesterday", None),
        ("unix_s", 10**20, None),
    ],
)
def test_transforms(name: str, value: Any, expected: Any) -> None:
    assert TRANSFORMS[name](value) == expected


def test_fields_compile_paths_coalesce_templates_and_list_picks() -> None:
    doc = {
        "event": {
            "a": {"b": {"c": {"d": "deep"}}},
            "emails": [{"value": "x@example.com"}, {"value": "p@example.com", "primary": True}],
            "gid": "gid://shopify/Customer/7",
        },
        "headers": {},
    }

    def value(spec: Any) -> Any:
        return compile_field(FieldSpec.model_validate(spec), "test").value(doc)

    assert value("event.a.b.c.d") == "deep"
    assert value("event.a.b.c.d.e") is None
    assert value("event.missing ?? event.a.b.c.d") == "deep"
    assert value('event.missing ?? "fallback"') == "fallback"
    assert value({"template": "{event.a.b.c.d}-{event.gid}"}) == "deep-gid://shopify/Customer/7"
    assert value({"template": "{event.missing}-x"}) is None
    assert value(
        {"expr": "event.emails", "first_where": "it.primary == true", "pick": "value"}
    ) == ("p@example.com")
    assert (
        value({"expr": "event.gid", "transform": ["strip_prefix:gid://shopify/Customer/"]}) == "7"
    )
    assert value("event.a.b == null") is False
