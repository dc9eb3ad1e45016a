"""Identifiers in provider URL paths: checked and percent-quoted as exactly one segment.

Every client builds its paths with `path_segment`: quoting alone keeps `/`, `?` and `#` out,
but `.` and `..` pass through it unchanged, and the HTTP client then resolves them
(`/api/v3/pass/..` becomes `/api/v3`: another endpoint). Such ids never reach the network.
"""

from __future__ import annotations

from urllib.parse import quote

from worker.providers.errors import RejectedError

# Longer than any provider's identifiers; keeps a URL well under every server's line limit.
MAX_SEGMENT = 1024
_DOT_SEGMENTS = frozenset({".", ".."})


def path_segment(value: str, *, action: str, what: str = "identifier") -> str:
    """`value` quoted as one path segment; RejectedError (nothing sent) if it cannot be one."""
    if not value.strip():
        # An empty id would turn /pass/{id} into the list endpoint.
        raise RejectedError(f"{action}: the {what} is empty")
    if value in _DOT_SEGMENTS:
        raise RejectedError(f"{action}: the {what} {value!r} is not an identifier")
    if len(value) > MAX_SEGMENT:
        raise RejectedError(f"{action}: the {what} is longer than {MAX_SEGMENT} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise RejectedError(f"{action}: the {what} holds control characters")
    return quote(value, safe="")
