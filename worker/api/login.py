"""Dashboard sign-in: one-time login links and read-only session cookies (no fastapi here:
`passsync dashboard` makes links with it too).

A login link carries a code, not a token: `<name>.<expires>.<nonce>.<mac>`, signed with a key
derived from the named read token's secret, valid for `LINK_SECONDS` and accepted once. It
is exchanged for a session cookie of the same form (a random session id, `SESSION_SECONDS`
long) that opens the dashboard only: never the admin API. Rotating or removing the token
ends its links and sessions. Nothing is stored but the nonces of used links, in the process
(with `api.workers` > 1 a link could be replayed on another worker until it expires).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

LINK_SECONDS = 10 * 60
SESSION_SECONDS = 12 * 3600
LOGIN_PATH = "/dashboard/login"
_LABEL = b"passsync dashboard sign-in v1"


def signing_key(secret: str) -> bytes:
    """The key links and sessions of one admin token are signed with."""
    return key_from_digest(hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest())


def key_from_digest(digest: bytes) -> bytes:
    """The same key from the token's SHA-256 digest (what the API keeps in memory)."""
    return hmac.new(digest, _LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class Signed:
    """A verified code: whose (token name), until when, which nonce."""

    name: str
    expires: int
    nonce: str


def make_code(purpose: str, name: str, key: bytes, *, ttl: int, now: float | None = None) -> str:
    """A signed `purpose` code (link or session) for the token `name`."""
    expires = int(now if now is not None else time.time()) + ttl
    nonce = secrets.token_urlsafe(18)
    label = _b64(name.encode())
    mac = _mac(key, purpose, label, expires, nonce)
    return f"{label}.{expires}.{nonce}.{mac}"


def token_name(code: str) -> str | None:
    """The token name a code claims (unverified: to find its key)."""
    label = code.split(".", 1)[0]
    try:
        return base64.urlsafe_b64decode(label + "=" * (-len(label) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def verify(purpose: str, code: str, key: bytes, *, now: float | None = None) -> Signed | None:
    """The code's content if `key` signed it for `purpose` and it has not expired."""
    parts = code.split(".")
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    label, expires_text, nonce, mac = parts
    expires = int(expires_text)
    if not hmac.compare_digest(mac, _mac(key, purpose, label, expires, nonce)):
        return None
    if expires < (now if now is not None else time.time()):
        return None
    name = token_name(code)
    return None if name is None else Signed(name, expires, nonce)


class UsedLinks:
    """Nonces of links already exchanged, kept until they would have expired anyway."""

    def __init__(self) -> None:
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def first_use(self, signed: Signed, *, now: float | None = None) -> bool:
        moment = now if now is not None else time.time()
        with self._lock:
            for nonce in [n for n, until in self._used.items() if until < moment]:
                del self._used[nonce]
            if signed.nonce in self._used:
                return False
            self._used[signed.nonce] = signed.expires
            return True


def _mac(key: bytes, purpose: str, label: str, expires: int, nonce: str) -> str:
    message = f"{purpose}|{label}|{expires}|{nonce}".encode()
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
