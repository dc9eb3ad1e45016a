"""Request authentication for source kinds: HMAC templates, timestamps, tokens, Basic auth.

Two steps, like the standard receiver: `check_headers` (everything the headers alone can
decide: presence, format, timestamp window, tokens, Basic auth) before the body is read, and
`verify_body` on the raw bytes before anything parses them. Every configured secret is
tried (rotation) and every signature in the header, compared in constant time without an
early exit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from worker.inbound.signatures import SecretFormatError, SignatureError, decode_secret
from worker.inbound.sources.fields import SpecError, to_time
from worker.inbound.sources.spec import HmacSpec, TimestampSpec, VerifySpec

_TOKEN = re.compile(r"\{(body|method|url|secret|header:[^{}]+|param:[^{}]+)\}")
_MAX_SIGNATURES = 16


@dataclass(frozen=True)
class RequestParts:
    """What verification may read of a request besides its body."""

    method: str
    url: str  # the public URL as the sender signs it (configured, else as received)
    headers: Mapping[str, str]
    query: Mapping[str, str]


@dataclass(frozen=True)
class Checked:
    """The outcome of the header checks: what `verify_body` still has to do."""

    method: VerifySpec | None  # None: only an unsigned ping may follow
    signatures: tuple[bytes, ...] = ()
    params: Mapping[str, str] | None = None
    done: bool = False  # token / Basic auth / none: nothing left for the body


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, any case; the receiver passes a dict with lower-case names."""
    lowered = name.lower()
    value = headers.get(lowered)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


class Verifier:
    """The verify methods of one source and its secrets (current first, then rotated out)."""

    def __init__(
        self, methods: Sequence[VerifySpec], secrets: Sequence[str], *, allow_unsigned: bool
    ) -> None:
        for method in methods:
            if method.scheme == "none" and not allow_unsigned:
                raise SpecError("verify scheme none needs allow_unsigned: true on the source")
            if method.hmac is not None:
                _check_template(method.hmac)
        self.methods = tuple(methods)
        self.secrets = tuple(secrets)
        self._keys = {m.hmac.key_encoding: _keys(secrets, m.hmac) for m in methods if m.hmac}

    def check_headers(
        self, parts: RequestParts, *, ping_allowed: bool, now: float | None = None
    ) -> Checked:
        method = next((m for m in self.methods if _present(m, parts)), None)
        if method is None:
            if ping_allowed:
                return Checked(method=None)
            raise SignatureError("missing signature or credentials")
        if method.scheme == "none":
            return Checked(method=method, done=True)
        if not self.secrets:
            raise SignatureError("no secret configured for this source")
        if method.scheme == "hmac":
            assert method.hmac is not None
            signatures, params = _signatures(method.hmac, parts.headers)
            if method.timestamp is not None:
                _check_time(method.timestamp, parts.headers, params, now)
            return Checked(method=method, signatures=signatures, params=params)
        presented = _presented_secret(method, parts)
        if presented is None or not self._matches_secret(presented):
            raise SignatureError("wrong credentials")
        return Checked(method=method, done=True)

    def _matches_secret(self, presented: str) -> bool:
        matched = False
        for secret in self.secrets:
            matched |= hmac.compare_digest(secret.encode(), presented.encode())
        return matched

    def verify_body(self, checked: Checked, parts: RequestParts, body: bytes) -> None:
        if checked.done:
            return
        if checked.method is None:
            raise SignatureError("missing signature or credentials")
        spec = checked.method.hmac
        assert spec is not None
        matched = False
        for secret, key in zip(self.secrets, self._keys[spec.key_encoding], strict=True):
            message = _message(spec, parts, checked.params or {}, body, secret)
            expected = _digest(spec, key, message)
            for candidate in checked.signatures:
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise SignatureError("no matching signature")


def _check_template(spec: HmacSpec) -> None:
    rest = _TOKEN.sub("", spec.message)
    if "{" in rest or "}" in rest:
        raise SpecError(f"hmac message {spec.message!r}: unknown {{part}}")
    if spec.mode == "hmac" and "{secret}" in spec.message:
        raise SpecError("hmac message: {secret} belongs in a digest (mode: digest) only")


def _keys(secrets: Sequence[str], spec: HmacSpec) -> list[bytes]:
    keys = []
    for secret in secrets:
        if spec.key_encoding == "raw":
            keys.append(secret.encode())
        elif spec.key_encoding == "whsec":
            keys.append(decode_secret(secret))
        else:
            try:
                keys.append(base64.b64decode(secret, validate=True))
            except (binascii.Error, ValueError):
                raise SecretFormatError("secret is not valid base64") from None
    return keys


def _present(method: VerifySpec, parts: RequestParts) -> bool:
    if method.scheme == "hmac":
        spec = method.hmac
        assert spec is not None
        if spec.version_header is not None:
            version = (header(parts.headers, spec.version_header) or "").strip().lower()
            if version != (spec.version or "").lower():
                return False
        return any(header(parts.headers, name) for name in spec.header)
    if method.scheme == "basic_auth":
        value = header(parts.headers, "authorization") or ""
        return value[:6].lower() == "basic "
    if method.scheme == "url_token":
        return method.token_param in parts.query
    if method.scheme == "header_token":
        assert method.token_header is not None
        return header(parts.headers, method.token_header) is not None
    return True


def _presented_secret(method: VerifySpec, parts: RequestParts) -> str | None:
    if method.scheme == "url_token":
        return parts.query.get(method.token_param)
    if method.scheme == "header_token":
        assert method.token_header is not None
        return header(parts.headers, method.token_header)
    # basic_auth
    value = (header(parts.headers, "authorization") or "")[6:].strip()
    try:
        user, colon, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        return None
    if not colon:
        return None
    if method.username is not None and not hmac.compare_digest(
        user.encode(), method.username.encode()
    ):
        return None
    return password


def _signatures(
    spec: HmacSpec, headers: Mapping[str, str]
) -> tuple[tuple[bytes, ...], dict[str, str]]:
    raw = ""
    for name in spec.header:
        raw = header(headers, name) or ""
        if raw:
            break
    raw = raw.strip()
    params: dict[str, str] = {}
    values: list[str] = []
    if spec.format == "plain":
        # The hot path (Shopify, Square, WooCommerce): one signature, no parameters.
        one = _decode(spec, raw.removeprefix(spec.prefix) if spec.prefix else raw)
        if one is None:
            raise SignatureError("malformed signature")
        return (one,), params
    if spec.format == "params":
        for item in raw.split(","):
            key, eq, value = item.strip().partition("=")
            if not eq:
                raise SignatureError("malformed signature header")
            if key == spec.scheme:
                values.append(value)
            else:
                params.setdefault(key, value)
    else:
        values = [raw]
    if len(values) > _MAX_SIGNATURES:
        raise SignatureError("too many signatures")
    decoded = [_decode(spec, v.strip().removeprefix(spec.prefix)) for v in values]
    found = tuple(d for d in decoded if d is not None)
    if not found:
        raise SignatureError(
            f"no {spec.scheme} signature" if spec.format == "params" else "malformed signature"
        )
    return found, params


def _decode(spec: HmacSpec, value: str) -> bytes | None:
    try:
        if spec.encoding == "hex":
            return bytes.fromhex(value)
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_time(
    spec: TimestampSpec, headers: Mapping[str, str], params: Mapping[str, str], now: float | None
) -> None:
    raw = header(headers, spec.header) if spec.header else params.get(spec.param or "")
    if not raw:
        raise SignatureError("missing timestamp")
    unit = "auto" if spec.unit == "iso8601" else spec.unit
    if spec.unit in ("s", "ms") and not raw.strip().isdigit():
        raise SignatureError("malformed timestamp")
    when = to_time(raw.strip(), unit)
    if when is None:
        raise SignatureError("malformed timestamp")
    current = time.time() if now is None else now
    stamp = when.timestamp()
    future = spec.tolerance_seconds if spec.future_seconds is None else spec.future_seconds
    if stamp < current - spec.tolerance_seconds:
        raise SignatureError("timestamp too old")
    if stamp > current + future:
        raise SignatureError("timestamp too new")


def _message(
    spec: HmacSpec, parts: RequestParts, params: Mapping[str, str], body: bytes, secret: str
) -> bytes:
    def piece(part: str) -> bytes:
        if part == "body":
            return body
        if part == "method":
            return parts.method.upper().encode()
        if part == "url":
            return _decoded_url(parts.url, spec.url_decode).encode()
        if part == "secret":
            return secret.encode()
        kind, _, name = part.partition(":")
        value = header(parts.headers, name) if kind == "header" else params.get(name)
        return (value or "").encode()

    if spec.message == "{body}":
        return body
    out = bytearray()
    position = 0
    for match in _TOKEN.finditer(spec.message):
        out += spec.message[position : match.start()].encode()
        out += piece(match.group(1))
        position = match.end()
    out += spec.message[position:].encode()
    return bytes(out)


# HubSpot v3: "decode any of the URL-encoded characters listed" (and only those).
_HUBSPOT_DECODED = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


def _decoded_url(url: str, mode: str) -> str:
    if mode == "all":
        return unquote(url)
    if mode == "hubspot":
        return _HUBSPOT_DECODED.sub(lambda m: chr(int(m.group(1), 16)), url)
    return url


def _digest(spec: HmacSpec, key: bytes, message: bytes) -> bytes:
    if spec.mode == "digest":
        return hashlib.new(spec.algorithm, message, usedforsecurity=False).digest()
    return hmac.new(key, message, spec.algorithm).digest()
