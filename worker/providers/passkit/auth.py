"""PassKit REST authentication: a fresh HS256 JWT per request, or a long-lived token.

The JWT follows the vendor's `jwt.sh`: header {"alg":"HS256","typ":"JWT"}, claims exactly
{uid, iat, exp} with uid = the REST API key, signed with the REST API secret, and sent as the
bare `Authorization` value (no "Bearer"). A long-lived token is sent as `Bearer <token>`.
Tokens are never cached: a retried request is signed again, so it never arrives too old.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import httpx
import jwt

from worker.config import ConfigError
from worker.providers.passkit.settings import PassKitSettings


def sign_token(
    api_key: str,
    secret: str,
    *,
    now: float,
    issued_before_seconds: float,
    expires_after_seconds: float,
) -> str:
    """One PassKit JWT: iat slightly in the past (server clocks lag), a short exp."""
    claims = {
        "uid": api_key,
        "iat": int(now - issued_before_seconds),
        "exp": int(now + expires_after_seconds),
    }
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "JWT"})


class PassKitAuth(httpx.Auth):
    """Sets `Authorization` on every request (and on every retry) from the account settings."""

    def __init__(self, settings: PassKitSettings, *, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lifetime = (settings.jwt_issued_before_seconds, settings.jwt_expires_after_seconds)
        if settings.auth == "long_lived_token":
            if settings.api_key is None:
                raise ConfigError(
                    "PassKit account with auth long_lived_token: set api_key to the token "
                    "(PASSSYNC_PROVIDERS__<ACCOUNT>__API_KEY)"
                )
            self._bearer: str | None = settings.api_key.get_secret_value()
            self._key = self._secret = ""
            return
        if settings.api_key is None or settings.secret is None:
            raise ConfigError(
                "PassKit account: set api_key and secret, the REST credentials from the "
                "portal's developer tools (PASSSYNC_PROVIDERS__<ACCOUNT>__API_KEY and "
                "__SECRET), or auth: long_lived_token with the token as api_key"
            )
        self._bearer = None
        self._key = settings.api_key.get_secret_value()
        self._secret = settings.secret.get_secret_value()

    def header(self) -> str:
        """The Authorization value for a request sent now."""
        if self._bearer is not None:
            return f"Bearer {self._bearer}"
        before, after = self._lifetime
        return sign_token(
            self._key,
            self._secret,
            now=self._clock(),
            issued_before_seconds=before,
            expires_after_seconds=after,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header()
        yield request
