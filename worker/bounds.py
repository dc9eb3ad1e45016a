"""Bounds for free-form JSON taken from a request, checked during validation (a 422).

A validly signed or authenticated request can still carry JSON that every database and
serializer downstream refuses or chokes on: nesting hundreds of levels deep, a NUL character
(Postgres text and JSONB refuse it), a lone surrogate (not encodable as UTF-8), NaN. Found at
commit time such a value fails the whole group transaction it was committed with; found
here it fails only its own request, with a 422 naming the field.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator

# Deeper than any real CRM payload; far below the interpreter's recursion limit.
MAX_DEPTH = 32
# Values (objects, arrays, scalars, keys) in one free-form field.
MAX_NODES = 20_000
# The widest signed integer every database and JSON consumer here keeps exactly.
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


# How far in the future a sender's clock may be; later times would make every real event
# after it look older and be skipped.
MAX_FUTURE_SKEW = timedelta(hours=1)
EARLIEST_YEAR = 2000
LATEST_YEAR = 9000


class JsonBoundsError(ValueError):
    """The value is out of bounds; the message names why (never the value)."""


def check_json(value: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """`value` unchanged if it is storable JSON within the bounds; else JsonBoundsError."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise JsonBoundsError(f"more than {max_nodes} values")
        if isinstance(item, dict):
            if depth >= max_depth:
                raise JsonBoundsError(f"nested deeper than {max_depth} levels")
            for key, child in item.items():
                if not isinstance(key, str):
                    raise JsonBoundsError("object keys must be strings")
                check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= max_depth:
                raise JsonBoundsError(f"nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in item)
        else:
            _check_scalar(item)
    return value


def check_text(text: str) -> str:
    """`text` if a database can store it: no NUL character, no lone surrogate."""
    if "\x00" in text:
        raise JsonBoundsError("text must not contain the NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonBoundsError("text must be valid unicode (no lone surrogates)") from None
    return text


def check_moment(value: datetime) -> datetime:
    """`value` if it is a plausible time for something that just happened."""
    if value.year < EARLIEST_YEAR or value > datetime.now(UTC) + MAX_FUTURE_SKEW:
        raise ValueError(f"time is before {EARLIEST_YEAR} or more than an hour in the future")
    return value


def check_range(value: datetime) -> datetime:
    """`value` if every database here stores it and it converts to UTC without overflow."""
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"time must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


def _check_scalar(item: Any) -> None:
    if isinstance(item, str):
        check_text(item)
    elif isinstance(item, bool) or item is None:
        return
    elif isinstance(item, int):
        if not INT64_MIN <= item <= INT64_MAX:
            raise JsonBoundsError("integers must fit in 64 bits")
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise JsonBoundsError("numbers must be finite")
    else:
        raise JsonBoundsError(f"unsupported value type {type(item).__name__}")


def _check_object(value: dict[str, Any]) -> dict[str, Any]:
    check_json(value)
    return value


def _check_any(value: Any) -> Any:
    return check_json(value)


# A free-form JSON object field of a request model, bounded as above.
JsonObject = Annotated[dict[str, Any], AfterValidator(_check_object)]
# Any JSON value (an item of a list the edge passes on), bounded as above.
JsonValue = Annotated[Any, AfterValidator(_check_any)]
# A time a request may name (a schedule, a filter): within storable years.
Moment = Annotated[datetime, AfterValidator(check_range)]
# A stored string: storable text (length limits stay with each field's Field()).
Text = Annotated[str, AfterValidator(check_text)]
