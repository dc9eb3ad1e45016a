"""The part of Passcreator's v3 Query Language (§4.1) the sandbox understands."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from worker.providers.passcreator.sandbox.store import StoredPass


class QueryError(ValueError):
    """The `query` parameter is not base64url JSON of the documented shape."""


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


def _numeric(left: Any, right: Any, compare: Callable[[float, float], bool]) -> bool:
    try:
        return compare(float(left), float(right))
    except (TypeError, ValueError):
        return False


def _truth(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": lambda a, b: _as_text(a) == _as_text(b),
    "notEquals": lambda a, b: _as_text(a) != _as_text(b),
    "contains": lambda a, b: _as_text(b).lower() in _as_text(a).lower(),
    "doesNotContain": lambda a, b: _as_text(b).lower() not in _as_text(a).lower(),
    "beginsWith": lambda a, b: _as_text(a).lower().startswith(_as_text(b).lower()),
    "endsWith": lambda a, b: _as_text(a).lower().endswith(_as_text(b).lower()),
    "greaterThan": lambda a, b: _numeric(a, b, lambda x, y: x > y),
    "greaterThanOrEquals": lambda a, b: _numeric(a, b, lambda x, y: x >= y),
    "lowerThan": lambda a, b: _numeric(a, b, lambda x, y: x < y),
    "lowerThanOrEquals": lambda a, b: _numeric(a, b, lambda x, y: x <= y),
    "empty": lambda a, _b: _as_text(a) == "",
    "notEmpty": lambda a, _b: _as_text(a) != "",
    "isTrue": lambda a, _b: _truth(a),
    "isFalse": lambda a, _b: not _truth(a),
}
# Operators whose array value means "any of" (OR); negative ones mean "none of".
_NEGATIVE = frozenset({"notEquals", "doesNotContain"})


def decode_query(raw: str) -> dict[str, Any]:
    """base64url (padding optional) JSON object -> dict."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
        parsed = json.loads(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise QueryError("query must be base64url-encoded JSON") from exc
    if not isinstance(parsed, dict):
        raise QueryError("query must be a JSON object")
    return parsed


def field_value(stored: StoredPass, name: str) -> Any:
    builtins: dict[str, Any] = {
        "identifier": stored.identifier,
        "userProvidedId": stored.user_provided_id,
        "barcodeValue": stored.barcode_value,
        "templateId": stored.template_id,
        "voided": stored.voided,
    }
    return builtins[name] if name in builtins else stored.fields.get(name)


def _condition(stored: StoredPass, cond: dict[str, Any]) -> bool:
    operator = str(cond["operator"])
    test = _OPERATORS[operator]
    actual = field_value(stored, str(cond.get("field", "")))
    values = cond.get("value")
    if not isinstance(values, list):
        return test(actual, values)
    if operator in _NEGATIVE:
        return all(test(actual, v) for v in values)
    return any(test(actual, v) for v in values)


def build_filter(query: dict[str, Any]) -> Callable[[StoredPass], bool]:
    """templateId AND searchPhrase AND (group OR group ...), each group an AND of conditions."""
    groups = query.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise QueryError("groups must be a list of lists of conditions")
    for group in groups:
        for cond in group:
            if not isinstance(cond, dict) or cond.get("operator") not in _OPERATORS:
                raise QueryError(f"unsupported condition: {cond!r}")
    template_id = query.get("templateId")
    phrase = _as_text(query.get("searchPhrase")).lower()

    def keep(stored: StoredPass) -> bool:
        if template_id and stored.template_id != template_id:
            return False
        if phrase and phrase not in search_string(stored).lower():
            return False
        return not groups or any(all(_condition(stored, c) for c in g) for g in groups)

    return keep


def search_string(stored: StoredPass) -> str:
    """All data joined with `|`, like Passcreator's searchString."""
    parts = [stored.identifier, stored.user_provided_id, stored.barcode_value]
    parts += [_as_text(v) for v in stored.fields.values()]
    return "|".join(p for p in parts if p)
