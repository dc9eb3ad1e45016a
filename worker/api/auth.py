"""Bearer-token authentication and scopes for the admin API; reuse `ReadAccess`/`WriteAccess`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from worker.api.context import Context
from worker.api.login import key_from_digest
from worker.config import AdminToken

Scope = Literal["read", "write"]

_bearer = HTTPBearer(auto_error=False, description="An admin token from admin_tokens.<name>")


@dataclass(frozen=True)
class Principal:
    """The admin token a request authenticated with (its name, never its secret)."""

    name: str
    scopes: frozenset[str]


class AdminAuth:
    """Matches presented tokens against configured secrets in constant time."""

    def __init__(self, tokens: Mapping[str, AdminToken]) -> None:
        # Digests of equal length: compare_digest then leaks neither content nor length.
        self._tokens = tuple(
            (name, _digest(token.secret.get_secret_value()), frozenset(token.scopes))
            for name, token in sorted(tokens.items())
            if token.secret is not None and token.secret.get_secret_value()
        )

    def authenticate(self, presented: str) -> Principal | None:
        digest = _digest(presented)
        found: Principal | None = None
        for name, expected, scopes in self._tokens:
            # Every configured token is compared, whichever one matches.
            if hmac.compare_digest(digest, expected) and found is None:
                found = Principal(name=name, scopes=scopes)
        return found

    def signing_key(self, name: str) -> tuple[bytes, frozenset[str]] | None:
        """The dashboard sign-in key of the token `name` and its scopes (None: no such token)."""
        for known, digest, scopes in self._tokens:
            if hmac.compare_digest(known.encode(), name.encode()):
                return key_from_digest(digest), scopes
        return None


def require_scope(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: 401 without a known bearer token, 403 when the token lacks `scope`."""

    # async: a plain `def` dependency would cost a worker-thread hop per request.
    async def dependency(
        ctx: Context,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or not credentials.credentials:
            raise _unauthorized("missing bearer token")
        principal = ctx.admin_auth.authenticate(credentials.credentials)
        if principal is None:
            raise _unauthorized("unknown token")
        if scope not in principal.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"token lacks the {scope} scope")
        return principal

    return dependency


ReadAccess = Annotated[Principal, Depends(require_scope("read"))]
WriteAccess = Annotated[Principal, Depends(require_scope("write"))]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
