"""Standard Webhooks signature verification on the raw body bytes, with key rotation.

The HMAC itself (secret decoding, `v1` = HMAC-SHA256 over ``id.timestamp.body``) comes from
the `standardwebhooks` library: we call ``Webhook.sign`` and compare the result ourselves.
We do not call ``Webhook.verify`` because it hard-codes a 5-minute tolerance (ours is
``api.signature_tolerance_seconds``, up to an hour), decodes secrets leniently (base64 junk is
silently dropped) and raises ValueError / binascii.Error / UnicodeDecodeError on malformed
input. Parsing the headers here turns every malformed case into one SignatureError.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from worker.config import SourceSettings

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

# The spec sends unix seconds as an integer; floats or exponents would not sign identically.
_TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
# Printable ASCII without spaces: the id is part of the signed string and must not be ambiguous.
_MSG_ID_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
_MAX_SIGNATURES = 16
_SHA256_BYTES = 32


class SignatureError(Exception):
    """The request is not signed by a known secret; `reason` is short and safe to return."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SecretFormatError(ValueError):
    """A configured secret is not `whsec_<base64>` or raw base64 (the secret is not shown)."""


def decode_secret(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` or raw base64 secret; strict, unlike the library."""
    text = secret.strip()
    text = text.removeprefix(SECRET_PREFIX)
    text = text.rstrip("=")
    text += "=" * (-len(text) % 4)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SecretFormatError("secret is not valid base64") from None
    if not key:
        raise SecretFormatError("secret is empty")
    return key


@dataclass(frozen=True)
class SignedHeaders:
    """The three signature headers, parsed and within tolerance, before the body is read."""

    msg_id: str
    timestamp: int
    signatures: tuple[bytes, ...]


class WebhookVerifier:
    """Verifies Standard Webhooks signatures against a current secret and rotated-out ones."""

    def __init__(self, secrets: Sequence[str], *, tolerance_seconds: int) -> None:
        self._keys = tuple(Webhook(decode_secret(secret)) for secret in secrets)
        self.tolerance_seconds = tolerance_seconds

    @classmethod
    def for_source(cls, source: SourceSettings, *, tolerance_seconds: int) -> WebhookVerifier:
        """A verifier from a source's `secret` and space-separated `previous_secrets`."""
        secrets: list[str] = []
        if source.secret is not None and source.secret.get_secret_value().strip():
            secrets.append(source.secret.get_secret_value())
            if source.previous_secrets is not None:
                secrets.extend(source.previous_secrets.get_secret_value().split())
        # No current secret: refuse everything, even if old secrets linger in the settings.
        return cls(secrets, tolerance_seconds=tolerance_seconds)

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def check_headers(
        self, headers: Mapping[str, str], *, now: float | None = None
    ) -> SignedHeaders:
        """Parse the headers and check the timestamp window; no body needed yet."""
        if not self._keys:
            raise SignatureError("no secret configured for this source")
        msg_id = _header(headers, HEADER_ID)
        raw_ts = _header(headers, HEADER_TIMESTAMP)
        raw_sig = _header(headers, HEADER_SIGNATURE)
        if not msg_id or not raw_ts or not raw_sig:
            raise SignatureError("missing signature headers")
        if not _MSG_ID_RE.match(msg_id):
            raise SignatureError("malformed webhook-id")
        if not _TIMESTAMP_RE.match(raw_ts):
            raise SignatureError("malformed webhook-timestamp")
        timestamp = int(raw_ts)
        current = time.time() if now is None else now
        if timestamp < current - self.tolerance_seconds:
            raise SignatureError("timestamp too old")
        if timestamp > current + self.tolerance_seconds:
            raise SignatureError("timestamp too new")
        return SignedHeaders(msg_id, timestamp, _parse_signatures(raw_sig))

    def verify_body(self, signed: SignedHeaders, body: bytes) -> None:
        """Check the body against the parsed headers; raises SignatureError on any mismatch."""
        try:
            # The library signs text; a sender signs bytes, which are equal only for UTF-8.
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8") from None
        when = datetime.fromtimestamp(signed.timestamp, tz=UTC)
        matched = False
        for key in self._keys:
            expected = _signature_bytes(key.sign(signed.msg_id, when, text))
            for candidate in signed.signatures:
                # No early exit: the time taken does not depend on which secret matched.
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise SignatureError("no matching signature")

    def verify(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> SignedHeaders:
        """Verify headers and body in one call; returns the parsed headers."""
        signed = self.check_headers(headers, now=now)
        self.verify_body(signed, body)
        return signed


def sign(secret: str, msg_id: str, timestamp: int | datetime, body: bytes | str) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, as a sender would send them."""
    when = (
        timestamp.astimezone(UTC)
        if isinstance(timestamp, datetime)
        else datetime.fromtimestamp(int(timestamp), tz=UTC)
    )
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    signature = Webhook(decode_secret(secret)).sign(msg_id, when, text)
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(int(when.timestamp())),
        HEADER_SIGNATURE: signature,
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        # Plain dicts are case-sensitive; Starlette's Headers are not.
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return (value or "").strip()


def _parse_signatures(header: str) -> tuple[bytes, ...]:
    """The `v1` signatures of a space-separated list; other versions are skipped."""
    found: list[bytes] = []
    tokens = header.split()
    if len(tokens) > _MAX_SIGNATURES:
        raise SignatureError("too many signatures")
    for token in tokens:
        version, comma, value = token.partition(",")
        if not comma:
            raise SignatureError("malformed webhook-signature")
        if version != "v1":
            continue  # e.g. v1a (asymmetric) from a sender that sends both
        decoded = _b64(value)
        if decoded is None or len(decoded) != _SHA256_BYTES:
            raise SignatureError("malformed webhook-signature")
        found.append(decoded)
    if not found:
        raise SignatureError("no v1 signature")
    return tuple(found)


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _signature_bytes(versioned: str) -> bytes:
    return base64.b64decode(versioned.partition(",")[2])
