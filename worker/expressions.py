"""The rule expression language: paths, literals, comparisons, and/or/not, in, and `??`.

Expressions are parsed by hand into a small tree and evaluated against the event as plain JSON
data. Nothing reaches Python's eval and no attribute of a Python object is reachable: a path
only ever indexes dictionaries. Evaluation never raises: a missing path is null, a comparison
between values of different kinds is false.

Precedence, loosest first: `or`, `and`, `not`, comparisons (`== != < <= > >= in`, `not in`),
`??`. Messages are text with `{expression}` holes; `{{` and `}}` stand for literal braces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in"})
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<op>\?\?|==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t"}


class ExpressionError(ValueError):
    """Bad syntax; the message says what was expected and where."""


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Path:
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class ListOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class Binary:
    op: str  # "and", "or", "??" or one of COMPARISONS
    left: Expr
    right: Expr


Expr = Literal | Path | ListOf | Not | Binary


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, op, name, end
    text: str
    at: int


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise ExpressionError(f"unexpected {source[position]!r} at position {position + 1}")
        kind = match.lastgroup or "ws"
        if kind != "ws":
            out.append(_Token(kind, match.group(), position))
        position = match.end()
    out.append(_Token("end", "", len(source)))
    return out


class _Parser:
    """Recursive descent over the token list; one method per precedence level."""

    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.index = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek
        if token.kind in ("op", "name") and token.text == text:
            self.index += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.error(f"expected {text!r}")

    def error(self, expected: str) -> ExpressionError:
        token = self.peek
        found = "the end" if token.kind == "end" else repr(token.text)
        return ExpressionError(f"{expected} at position {token.at + 1}, found {found}")

    def parse(self) -> Expr:
        node = self.disjunction()
        if self.peek.kind != "end":
            raise self.error("expected an operator or the end")
        return node

    def disjunction(self) -> Expr:
        node = self.conjunction()
        while self.accept("or"):
            node = Binary("or", node, self.conjunction())
        return node

    def conjunction(self) -> Expr:
        node = self.negation()
        while self.accept("and"):
            node = Binary("and", node, self.negation())
        return node

    def negation(self) -> Expr:
        if self.accept("not"):
            return Not(self.negation())
        return self.comparison()

    def comparison(self) -> Expr:
        node = self.coalesce()
        op = self.comparison_operator()
        if op is None:
            return node
        node = Binary(op, node, self.coalesce())
        if self.comparison_operator() is not None:
            raise ExpressionError("comparisons cannot be chained; join them with 'and'")
        return node

    def comparison_operator(self) -> str | None:
        token = self.peek
        if token.text == "not" and self.tokens[self.index + 1].text == "in":
            self.index += 2
            return "not in"
        if token.kind in ("op", "name") and token.text in COMPARISONS:
            self.index += 1
            return token.text
        return None

    def coalesce(self) -> Expr:
        node = self.primary()
        while self.accept("??"):
            node = Binary("??", node, self.primary())
        return node

    def primary(self) -> Expr:
        token = self.peek
        if token.kind == "number":
            self.index += 1
            return Literal(float(token.text) if "." in token.text else int(token.text))
        if token.kind == "string":
            self.index += 1
            return Literal(_unquote(token.text))
        if self.accept("("):
            node = self.disjunction()
            self.expect(")")
            return node
        if self.accept("["):
            return self.list_items()
        if token.kind == "name" and token.text in _CONSTANTS:
            self.index += 1
            return Literal(_CONSTANTS[token.text])
        if token.kind == "name" and token.text not in KEYWORDS:
            return self.path()
        raise self.error("expected a value")

    def list_items(self) -> Expr:
        items: list[Expr] = []
        while not self.accept("]"):
            if items:
                self.expect(",")
            items.append(self.coalesce())
        return ListOf(tuple(items))

    def path(self) -> Expr:
        parts = [self.take().text]
        while self.accept("."):
            if self.peek.kind != "name":
                raise self.error("expected a field name after '.'")
            parts.append(self.take().text)
        return Path(tuple(parts))


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])


def parse(source: str) -> Expr:
    """Parse one expression; ExpressionError on bad syntax."""
    if not source.strip():
        raise ExpressionError("empty expression")
    return _Parser(source).parse()


def paths(node: Expr) -> Iterator[Path]:
    """Every event path the expression reads."""
    if isinstance(node, Path):
        yield node
    elif isinstance(node, ListOf):
        for item in node.items:
            yield from paths(item)
    elif isinstance(node, Not):
        yield from paths(node.operand)
    elif isinstance(node, Binary):
        yield from paths(node.left)
        yield from paths(node.right)


def evaluate(node: Expr, doc: dict[str, Any]) -> Any:
    """The value of `node` for the event `doc` (its JSON form)."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Path):
        return lookup(doc, node.parts)
    if isinstance(node, ListOf):
        return [evaluate(item, doc) for item in node.items]
    if isinstance(node, Not):
        return not truthy(evaluate(node.operand, doc))
    return _binary(node, doc)


def _binary(node: Binary, doc: dict[str, Any]) -> Any:
    left = evaluate(node.left, doc)
    if node.op == "and":
        return truthy(left) and truthy(evaluate(node.right, doc))
    if node.op == "or":
        return truthy(left) or truthy(evaluate(node.right, doc))
    if node.op == "??":
        return evaluate(node.right, doc) if left is None else left
    return compare(node.op, left, evaluate(node.right, doc))


def lookup(doc: Any, parts: tuple[str, ...]) -> Any:
    """Follow a path through dictionaries only; None where any step is missing."""
    node = doc
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def truthy(value: Any) -> bool:
    """null, false, 0, "" and empty lists or objects are false; everything else is true."""
    return bool(value)


def compare(op: str, left: Any, right: Any) -> bool:
    """Compare without Python's coercions: true is not 1, and "3" is not 3."""
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op == "in":
        return _contains(right, left)
    if op == "not in":
        return not _contains(right, left)
    return _ordered(op, left, right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    return type(left) is type(right) and bool(left == right)


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, list):
        return any(_equal(item, element) for element in container)
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, dict):
        return isinstance(item, str) and item in container
    return False


def _ordered(op: str, left: Any, right: Any) -> bool:
    both_numbers = _is_number(left) and _is_number(right)
    if not (both_numbers or (isinstance(left, str) and isinstance(right, str))):
        return False
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


@dataclass(frozen=True)
class Message:
    """Text with `{expression}` holes, for push notifications."""

    parts: tuple[str | Expr, ...]

    def render(self, doc: dict[str, Any]) -> str:
        return "".join(
            part if isinstance(part, str) else show(evaluate(part, doc)) for part in self.parts
        )

    def paths(self) -> Iterator[Path]:
        for part in self.parts:
            if not isinstance(part, str):
                yield from paths(part)


def show(value: Any) -> str:
    """A value as message text: null is empty, booleans are lower case."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def parse_message(source: str) -> Message:
    """Parse message text; ExpressionError on an unclosed hole or a bad expression in one."""
    parts: list[str | Expr] = []
    text: list[str] = []
    position = 0
    while position < len(source):
        char = source[position]
        if source.startswith(("{{", "}}"), position):
            text.append(char)
            position += 2
        elif char == "{":
            end = _hole_end(source, position + 1)
            if text:
                parts.append("".join(text))
                text = []
            parts.append(_parse_hole(source[position + 1 : end], position))
            position = end + 1
        elif char == "}":
            raise ExpressionError(f"'}}' without '{{' at position {position + 1} (write '}}}}')")
        else:
            text.append(char)
            position += 1
    if text:
        parts.append("".join(text))
    return Message(tuple(parts))


def _hole_end(source: str, start: int) -> int:
    quote: str | None = None
    position = start
    while position < len(source):
        char = source[position]
        if quote and char == "\\":
            position += 1
        elif quote and char == quote:
            quote = None
        elif not quote and char in "'\"":
            quote = char
        elif not quote and char == "}":
            return position
        position += 1
    raise ExpressionError(f"'{{' at position {start} is never closed")


def _parse_hole(inner: str, at: int) -> Expr:
    try:
        return parse(inner)
    except ExpressionError as exc:
        raise ExpressionError(f"in '{{{inner}}}' at position {at + 1}: {exc}") from None
