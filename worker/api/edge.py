"""The gate in front of every route: admin credentials before the body, and one body limit.

It runs before routing, so nothing reads a byte of an admin route's body until its token is
known (401 without one, 403 for a change with a read-only token), and no route reads more
than `api.max_body_bytes` (413: at once when Content-Length says so, else as soon as the
count passes it). Routes that stream their body may be given their own limit.
The route dependencies (`ReadAccess`/`WriteAccess`) still check the scope: they document it
in OpenAPI and protect an app served without this gate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import HTTPException, status
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from worker.api.auth import AdminAuth
from worker.api.errors import SAFE_METHODS

ADMIN_PREFIX = "/api/"


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BodyLimit:
    """A route (path regex) with its own body limit: the streaming campaign import."""

    pattern: re.Pattern[str]
    limit: int


class EdgeGate:
    """Decides before routing; `receive` wraps the body stream with the byte count."""

    def __init__(
        self, auth: AdminAuth, max_body_bytes: int, overrides: Sequence[BodyLimit] = ()
    ) -> None:
        self._auth = auth
        self._max_body = max_body_bytes
        self._overrides = tuple(overrides)

    def limit_for(self, path: str) -> int:
        for override in self._overrides:
            if override.pattern.fullmatch(path):
                return override.limit
        return self._max_body

    def check(self, scope: Scope) -> Refusal | None:
        """A refusal for this request, decided from its method, path and headers only."""
        path = route_path(scope)
        if _has_nul(path, scope.get("query_string", b"")):
            # No database stores a NUL character (Postgres refuses it): never a lookup key.
            return Refusal(status.HTTP_400_BAD_REQUEST, "the URL holds a NUL character")
        headers = Headers(scope=scope)
        if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
            refusal = self._admin(scope["method"], headers)
            if refusal is not None:
                return refusal
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isascii() or not declared.isdigit():
                return Refusal(status.HTTP_400_BAD_REQUEST, "invalid Content-Length")
            limit = self.limit_for(path)
            if int(declared) > limit:
                return Refusal(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")
        return None

    def _admin(self, method: str, headers: Headers) -> Refusal | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _unauthorized("missing bearer token")
        principal = self._auth.authenticate(token)
        if principal is None:
            return _unauthorized("unknown token")
        if method not in SAFE_METHODS and "write" not in principal.scopes:
            return Refusal(status.HTTP_403_FORBIDDEN, "token lacks the write scope")
        return None

    def receive(self, scope: Scope, receive: Receive) -> Receive:
        """`receive` that raises a 413 HTTPException once the body passes the limit."""
        limit = self.limit_for(route_path(scope))
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(
                        status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes"
                    )
            return message

        return limited


def _has_nul(path: str, query: bytes) -> bool:
    return "\x00" in path or b"\x00" in query or b"%00" in query.lower()


def route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


def _unauthorized(detail: str) -> Refusal:
    return Refusal(status.HTTP_401_UNAUTHORIZED, detail, (("WWW-Authenticate", "Bearer"),))


async def send_refusal(send: Send, refusal: Refusal) -> None:
    """The refusal as a JSON answer; the body is never read, and the connection closes."""
    body = json.dumps({"detail": refusal.detail}, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # An unread body cannot be skipped on a kept-alive connection: close it.
        (b"connection", b"close"),
        *((name.lower().encode(), value.encode()) for name, value in refusal.headers),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
