"""Compiled mapping fields: an expression or template, `first_where`/`pick`, then transforms."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.expressions import (
    COMPARISONS,
    Binary,
    Expr,
    ExpressionError,
    ListOf,
    Literal,
    Not,
    Path,
    compare,
    evaluate,
    parse,
    parse_message,
    show,
    truthy,
)
from worker.inbound.sources.spec import FieldSpec

Doc = dict[str, Any]
Getter = Callable[[Any], Any]
_MS_THRESHOLD = 100_000_000_000  # a unix time above this (year 5138 in seconds) is in ms


class SpecError(ValueError):
    """A source's adapter configuration is invalid; the message names the place."""


def _string(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return None  # objects and lists have no string form here


def _text(fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        return fn(value) if isinstance(value, str) else value

    return apply


def _first_word(value: str) -> str | None:
    words = value.split()
    return words[0] if words else None


def _last_words(value: str) -> str | None:
    words = value.split()
    return " ".join(words[1:]) if len(words) > 1 else None


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _cents(value: Any) -> Any:
    number = _number(value)
    try:
        return None if number is None else round(number / 100, 2)
    except OverflowError:  # an integer beyond any float
        return None


def to_time(value: Any, unit: str = "auto") -> datetime | None:
    """A datetime from unix seconds/ms (numbers or digit strings) or ISO 8601; else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, int | float):
        seconds = float(value)
        if unit == "ms" or (unit == "auto" and abs(seconds) >= _MS_THRESHOLD):
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and unit in ("auto", "iso8601"):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "string": _string,
    "lower": _text(str.lower),
    "upper": _text(str.upper),
    "trim": _text(str.strip),
    "first_word": _text(_first_word),
    "last_words": _text(_last_words),
    "number": _number,
    "cents": _cents,
    "empty_is_null": lambda v: None if v in ("", [], {}) else v,
    "time": to_time,
    "unix_s": lambda v: to_time(v, "s"),
    "unix_ms": lambda v: to_time(v, "ms"),
    "iso8601": lambda v: to_time(v, "iso8601"),
}
PARAMETRIC = ("strip_prefix:",)


def _transform(name: str, where: str) -> Callable[[Any], Any]:
    if name.startswith("strip_prefix:"):
        prefix = name.removeprefix("strip_prefix:")
        return _text(lambda v: v.removeprefix(prefix))
    fn = TRANSFORMS.get(name)
    if fn is None:
        known = ", ".join([*TRANSFORMS, "strip_prefix:<text>"])
        raise SpecError(f"{where}: unknown transform {name!r} (known: {known})")
    return fn


def compile_expr(node: Expr) -> Getter:
    """A closure with `evaluate`'s result for `node`: paths and `??` (what mappings are made
    of) without walking the tree per event; anything else evaluates the tree."""
    if isinstance(node, Literal):
        constant = node.value
        return lambda _doc: constant
    if isinstance(node, Path):
        return _path_getter(node.parts)
    if isinstance(node, Binary) and node.op == "??":
        left, right = compile_expr(node.left), compile_expr(node.right)

        def coalesce(doc: Any) -> Any:
            value = left(doc)
            return right(doc) if value is None else value

        return coalesce
    if isinstance(node, Binary) and node.op in ("and", "or"):
        first, second = compile_expr(node.left), compile_expr(node.right)
        if node.op == "and":
            return lambda doc: truthy(first(doc)) and truthy(second(doc))
        return lambda doc: truthy(first(doc)) or truthy(second(doc))
    if isinstance(node, Binary) and node.op in COMPARISONS:
        op, left_of, right_of = node.op, compile_expr(node.left), compile_expr(node.right)
        return lambda doc: compare(op, left_of(doc), right_of(doc))
    if isinstance(node, Not):
        operand = compile_expr(node.operand)
        return lambda doc: not truthy(operand(doc))
    if isinstance(node, ListOf):
        items = tuple(compile_expr(item) for item in node.items)
        return lambda doc: [item(doc) for item in items]
    return lambda doc: evaluate(node, doc)  # pragma: no cover - every node kind is above


def _path_getter(parts: tuple[str, ...]) -> Getter:
    # One, two and three steps (nearly every mapped path) unrolled: this runs per field per
    # event on the receiver's hot path.
    if len(parts) == 1:
        (a,) = parts
        return lambda doc: doc.get(a) if isinstance(doc, dict) else None
    if len(parts) == 2:
        a, b = parts

        def get2(doc: Any) -> Any:
            node = doc.get(a) if isinstance(doc, dict) else None
            return node.get(b) if isinstance(node, dict) else None

        return get2
    if len(parts) == 3:
        a, b, c = parts

        def get3(doc: Any) -> Any:
            node = doc.get(a) if isinstance(doc, dict) else None
            node = node.get(b) if isinstance(node, dict) else None
            return node.get(c) if isinstance(node, dict) else None

        return get3

    def get(doc: Any) -> Any:
        node = doc
        for part in parts:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node

    return get


@dataclass(frozen=True)
class Field:
    """One compiled FieldSpec: `value(doc)` is one closure (expression or template, then
    first_where/pick, then the transforms), composed once at start-up."""

    value: Getter


def _compose(
    source: Getter,
    first_where: Expr | None,
    pick: Expr | None,
    transforms: tuple[Callable[[Any], Any], ...],
) -> Getter:
    if first_where is None and pick is None and not transforms:
        return source
    if first_where is None and pick is None and len(transforms) == 1:
        [only] = transforms
        return lambda doc: only(source(doc))

    def value(doc: Any) -> Any:
        found = source(doc)
        if first_where is not None:
            found = _first_where(found, first_where)
        if pick is not None:
            found = evaluate(pick, found) if isinstance(found, dict) else None
        for fn in transforms:
            found = fn(found)
        return found

    return value


def _render(template: tuple[str | Getter, ...], doc: Any) -> str | None:
    out = []
    for part in template:
        if isinstance(part, str):
            out.append(part)
            continue
        value = part(doc)
        shown = value if isinstance(value, str) else show(value)
        if not shown:
            return None
        out.append(shown)
    return "".join(out) or None


def _first_where(value: Any, condition: Expr) -> Any:
    if not isinstance(value, list):
        return None
    for element in value:
        if truthy(evaluate(condition, {"it": element})):
            return element
    return None


def compile_field(spec: FieldSpec, where: str) -> Field:
    """Compile one field; SpecError names `where` and what is wrong."""
    try:
        expr = parse(spec.expr) if spec.expr is not None else None
        template = parse_message(spec.template) if spec.template is not None else None
        first_where = parse(spec.first_where) if spec.first_where is not None else None
        pick = parse(spec.pick) if spec.pick is not None else None
    except ExpressionError as exc:
        raise SpecError(f"{where}: {exc}") from None
    transforms = tuple(_transform(name, where) for name in spec.transform)
    if expr is not None:
        source = compile_expr(expr)
    else:
        assert template is not None
        parts = tuple(p if isinstance(p, str) else compile_expr(p) for p in template.parts)
        source = functools.partial(_render, parts)
    return Field(_compose(source, first_where, pick, transforms))


def compile_condition(source: str, where: str) -> Getter:
    """A condition as a closure (its value; callers take its truth)."""
    try:
        return compile_expr(parse(source))
    except ExpressionError as exc:
        raise SpecError(f"{where}: {exc}") from None
