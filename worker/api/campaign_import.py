"""Recipients streamed into a draft campaign: NDJSON of any size, read as it arrives.

The one route with its own body limit (`campaigns.max_import_bytes`, not `api.max_body_bytes`):
the body is never held whole. A worker thread runs the importer (one transaction: a refused
request stores nothing) and pulls the body line by line from the event loop.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn

import anyio
import anyio.from_thread
from fastapi import HTTPException, status

from worker.bounds import JsonBoundsError, check_json
from worker.campaigns.importer import ImportResult, Row, RowError, from_object
from worker.db import Database

# One line (one recipient) at most; a longer one is refused as a whole request.
MAX_LINE_BYTES = 1_048_576


def ndjson_rows(pull: Callable[[], bytes | None]) -> Iterator[Row | RowError]:
    """Rows from NDJSON chunks handed out by `pull` (None at the end); bad lines are errors."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    number = 0
    while True:
        chunk = pull()
        try:
            pending += decoder.decode(chunk or b"", final=chunk is None)
        except UnicodeDecodeError:
            _refuse(status.HTTP_400_BAD_REQUEST, "the body is not UTF-8")
        *lines, pending = pending.split("\n")
        if len(pending) > MAX_LINE_BYTES:
            _refuse(status.HTTP_413_CONTENT_TOO_LARGE, f"a line exceeds {MAX_LINE_BYTES} bytes")
        if chunk is None:
            lines.append(pending)
        for line in lines:
            number += 1
            if line.strip():
                yield _row(number, line)
        if chunk is None:
            return


def _row(number: int, line: str) -> Row | RowError:
    try:
        item: Any = json.loads(line, parse_constant=_no_constant)
        check_json(item)
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, JsonBoundsError) else "not a JSON object"
        return RowError(number, reason)
    return from_object(number, item)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _refuse(code: int, detail: str) -> NoReturn:
    raise HTTPException(code, detail)


async def import_stream(
    db: Database,
    chunks: AsyncIterator[bytes],
    importer: Callable[[Any, Iterator[Row | RowError]], ImportResult],
) -> ImportResult:
    """Run `importer(session, rows)` in a thread over the streamed body; one transaction."""

    async def next_chunk() -> bytes | None:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return None

    def pull() -> bytes | None:
        return anyio.from_thread.run(next_chunk)

    def work() -> ImportResult:
        with db.session() as session:  # committed on success, rolled back on any error
            return importer(session, ndjson_rows(pull))

    return await anyio.to_thread.run_sync(work)
