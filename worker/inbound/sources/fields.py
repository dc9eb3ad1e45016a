"""Compiled mapping fields: an expression or template, `first_where`/`pick`, then transforms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.inbound.sources.spec import FieldSpec
from worker.sync.expressions import (
    Expr,
    ExpressionError,
    Message,
    evaluate,
    parse,
    parse_message,
    show,
    truthy,
)

Doc = dict[str, Any]
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
    return None if number is None else round(number / 100, 2)


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


@dataclass(frozen=True)
class Field:
    """One compiled FieldSpec."""

    expr: Expr | None
    template: Message | None
    first_where: Expr | None
    pick: Expr | None
    transforms: tuple[Callable[[Any], Any], ...]

    def value(self, doc: Doc) -> Any:
        if self.expr is not None:
            value = evaluate(self.expr, doc)
        else:
            assert self.template is not None
            value = _render(self.template, doc)
        if self.first_where is not None:
            value = _first_where(value, self.first_where)
        if self.pick is not None:
            value = evaluate(self.pick, value) if isinstance(value, dict) else None
        for fn in self.transforms:
            value = fn(value)
        return value


def _render(template: Message, doc: Doc) -> str | None:
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        shown = show(evaluate(part, doc))
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
    return Field(expr, template, first_where, pick, transforms)


def compile_condition(source: str, where: str) -> Expr:
    try:
        return parse(source)
    except ExpressionError as exc:
        raise SpecError(f"{where}: {exc}") from None
