"""Reading and parsing request bodies the signed receivers share: bounded, every failure a 4xx.

Any body that is not a JSON object answers 400 (malformed UTF-8, invalid JSON, NaN or
Infinity, nesting deeper than the parser goes, numbers too long to convert); a body over the
limit answers 413 before or while it is read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, NoReturn

from fastapi import HTTPException, status
from pydantic import ValidationError
from starlette.requests import ClientDisconnect


def check_content_length(headers: Mapping[str, str], limit: int) -> None:
    """413 when the declared length is over `limit`, 400 when it is not a number."""
    declared = headers.get("content-length")
    if declared is None:
        return
    if not declared.isascii() or not declared.isdigit():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid Content-Length")
    if int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")


async def read_body(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, read in chunks and abandoned as soon as it exceeds `limit`."""
    body = bytearray()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes"
                )
    except ClientDisconnect:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "client disconnected") from None
    return bytes(body)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; 400 for anything else."""
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        # ValueError covers invalid JSON, bad UTF-8 and integers too long to convert.
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body must be a JSON object")
    return data


def field_errors(exc: ValidationError, prefix: str = "body") -> list[dict[str, Any]]:
    """Pydantic's errors without the offending input (it may hold personal data)."""
    return [
        {"loc": [prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def unprocessable(loc: list[str | int], msg: str, type_: str = "value_error") -> NoReturn:
    """A 422 with one field error, in the same shape as every other 422."""
    raise HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, [{"loc": loc, "msg": msg, "type": type_}]
    )


def _refuse_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON, and Postgres JSONB refuses them.
    raise ValueError(f"{name} is not valid JSON")
