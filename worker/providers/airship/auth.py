"""Airship Wallet authentication: Basic (the project's key and secret) or OAuth2 client
credentials (a bearer token per account, cached, refreshed before it expires and once after
a 401, from the region's token endpoint).

Credentials are read through a callable on every token request and after every 401, so a
rotated secret is picked up without a restart; a token is requested by one thread at a time
(the others wait for it), and a 401 on a token that was already replaced just retries with
the new one: an expired token never causes a storm of token requests.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from worker.config import ConfigError
from worker.providers.airship.settings import AirshipSettings
from worker.providers.common.http import CallRecord, Outcome, snippet
from worker.providers.errors import RejectedError, TransientError

Credentials = Callable[[], tuple[str, str]]
DEFAULT_TOKEN_LIFETIME = 3600.0


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # Unix seconds
    issued_at: float
    scopes: tuple[str, ...]


def basic_header(key: str, secret: str, *, url_encode: bool = False) -> str:
    """`Basic base64(key:secret)`; OAuth client credentials are URL-encoded first (V)."""
    if url_encode:
        key, secret = quote(key, safe=""), quote(secret, safe="")
    raw = f"{key}:{secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def settings_credentials(settings: AirshipSettings) -> Credentials:
    """The account's key and secret as its settings hold them (ConfigError when missing)."""

    def read() -> tuple[str, str]:
        if settings.api_key is None or settings.secret is None:
            what = (
                "the OAuth client id and secret"
                if settings.auth == "oauth2"
                else "the Wallet project's key and secret (Settings > API)"
            )
            raise ConfigError(
                f"Airship account: set api_key and secret, {what} "
                "(PASSSYNC_PROVIDERS__<ACCOUNT>__API_KEY and __SECRET)"
            )
        return settings.api_key.get_secret_value(), settings.secret.get_secret_value()

    return read


class AirshipAuth(httpx.Auth):
    """Sets `Authorization` on every request; for OAuth2 it owns the account's token."""

    def __init__(
        self,
        settings: AirshipSettings,
        *,
        credentials: Credentials | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        on_attempt: Callable[[CallRecord], None] | None = None,
    ) -> None:
        self._settings = settings
        self._credentials = credentials or settings_credentials(settings)
        self._credentials()  # a missing credential stops start-up, not the first event
        self._clock = clock
        self._on_attempt = on_attempt
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._refreshes = 0
        self._oauth = settings.auth == "oauth2"
        self._token_http = (
            httpx.Client(
                transport=transport,
                timeout=httpx.Timeout(
                    settings.timeout_seconds,
                    connect=min(settings.connect_timeout_seconds, settings.timeout_seconds),
                ),
                follow_redirects=False,
            )
            if self._oauth
            else None
        )

    @property
    def scheme(self) -> str:
        return "oauth2" if self._oauth else "basic"

    @property
    def token(self) -> Token | None:
        """The cached OAuth token (None: Basic auth, or none requested yet)."""
        return self._token

    @property
    def token_requests(self) -> int:
        return self._refreshes

    def set_credentials(self, credentials: Credentials) -> None:
        """Use another credential source from now on (a rotated secret); the cached token
        is dropped, so the next request gets a token with the new secret."""
        with self._lock:
            self._credentials = credentials
            self._token = None

    def close(self) -> None:
        if self._token_http is not None:
            self._token_http.close()

    # -- httpx.Auth --------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._oauth:
            used = self._credentials()
            request.headers["Authorization"] = basic_header(*used)
            response = yield request
            if response.status_code == 401 and self._credentials() != used:
                # The secret was rotated while this request was under way: once more.
                request.headers["Authorization"] = basic_header(*self._credentials())
                yield request
            return
        token = self.current_token()
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code == 401:
            fresh = self._replace(token)
            request.headers["Authorization"] = f"Bearer {fresh.value}"
            yield request

    # -- the token -----------------------------------------------------------------------------

    def current_token(self) -> Token:
        """The cached token, or a new one when there is none or it is about to expire."""
        with self._lock:
            token = self._token
            if token is None or self._expiring(token):
                token = self._token = self._request_token()
            return token

    def _replace(self, rejected: Token) -> Token:
        """After a 401: a new token, unless another thread already replaced `rejected`."""
        with self._lock:
            if self._token is not None and self._token.value != rejected.value:
                return self._token
            self._token = self._request_token()
            return self._token

    def _expiring(self, token: Token) -> bool:
        lifetime = max(token.expires_at - token.issued_at, 0.0)
        margin = min(self._settings.token_refresh_margin_seconds, lifetime / 2)
        return self._clock() >= token.expires_at - margin

    def _request_token(self) -> Token:
        assert self._token_http is not None
        s = self._settings
        client_id, client_secret = self._credentials()
        form = {"grant_type": "client_credentials", "scope": " ".join(s.scopes)}
        if s.oauth_subject:
            form[s.oauth_subject_field] = s.oauth_subject
        url = s.token_endpoint()
        started = time.perf_counter()
        status: int | None = None
        outcome: Outcome = "ok"
        try:
            response = self._token_http.post(
                url,
                data=form,
                headers={
                    "Authorization": basic_header(client_id, client_secret, url_encode=True),
                    "Accept": "application/json",
                },
            )
            status = response.status_code
            token = self._parse(response)
        except httpx.TransportError as exc:
            outcome = "network_error"
            raise TransientError(f"token: network error ({type(exc).__name__})") from None
        except RejectedError:
            outcome = "rejected"
            raise
        except TransientError:
            outcome = "server_error"
            raise
        finally:
            self._record(status, outcome, (time.perf_counter() - started) * 1000)
        self._refreshes += 1
        return token

    def _parse(self, response: httpx.Response) -> Token:
        status = response.status_code
        if status >= 500 or status == 429:
            raise TransientError(
                f"token: Airship's token endpoint answered {status}", status=status
            )
        if status >= 400:
            raise RejectedError(
                f"token: Airship refused the OAuth client credentials ({status}): "
                f"{snippet(response.text)}; check api_key (client id), secret and region "
                f"({self._settings.region})",
                status=401 if status in (400, 401, 403) else status,
            )
        try:
            body = response.json()
        except ValueError:
            raise TransientError("token: the token endpoint's answer is not JSON") from None
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise TransientError("token: the answer holds no access_token")
        expires_in = body.get("expires_in", DEFAULT_TOKEN_LIFETIME)
        try:
            lifetime = float(expires_in)
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME
        scope = body.get("scope")
        scopes = tuple(scope.split()) if isinstance(scope, str) else tuple(self._settings.scopes)
        now = self._clock()
        return Token(value, now + lifetime, now, scopes)

    def _record(self, status: int | None, outcome: Outcome, elapsed_ms: float) -> None:
        if self._on_attempt is None:
            return
        record = CallRecord("token", "POST", "/token", status, elapsed_ms, 1, outcome)
        with contextlib.suppress(Exception):  # the audit hook must not change the outcome
            self._on_attempt(record)
