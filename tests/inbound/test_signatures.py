"""Standard Webhooks verification: every malformed input is one SignatureError, never a crash."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from worker.config import SourceSettings
from worker.inbound.signatures import (
    SecretFormatError,
    SignatureError,
    WebhookVerifier,
    decode_secret,
    sign,
)

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER = "whsec_" + base64.b64encode(b"another-key-another-key-another!").decode()
NOW = 1_780_000_000
TOLERANCE = 300


def verifier(*secrets: str, tolerance: int = TOLERANCE) -> WebhookVerifier:
    return WebhookVerifier(secrets or (SECRET,), tolerance_seconds=tolerance)


def reason(headers: dict[str, str], body: bytes, v: WebhookVerifier | None = None) -> str:
    with pytest.raises(SignatureError) as caught:
        (v or verifier()).verify(headers, body, now=NOW)
    return caught.value.reason


def test_sign_matches_the_spec_by_hand() -> None:
    # Given the spec's signed content: "{id}.{timestamp}.{body}" with HMAC-SHA256 over raw bytes
    body = '{"a":"ü"}'.encode()
    expected = base64.b64encode(
        hmac.new(KEY, b"msg_1.1780000000." + body, hashlib.sha256).digest()
    ).decode()
    # Then sign() produces exactly the three headers a sender sends
    assert sign(SECRET, "msg_1", NOW, body) == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1780000000",
        "webhook-signature": f"v1,{expected}",
    }


def test_verify_returns_the_parsed_headers() -> None:
    headers = sign(SECRET, "msg_1", NOW, b"{}")
    signed = verifier().verify(headers, b"{}", now=NOW)
    assert (signed.msg_id, signed.timestamp) == ("msg_1", NOW)


def test_header_names_are_case_insensitive_in_plain_dicts() -> None:
    headers = {k.upper(): v for k, v in sign(SECRET, "msg_1", NOW, b"{}").items()}
    assert verifier().verify(headers, b"{}", now=NOW).msg_id == "msg_1"


def test_raw_base64_and_unpadded_secrets_are_the_same_key() -> None:
    raw = base64.b64encode(KEY).decode()
    headers = sign(SECRET, "msg_1", NOW, b"{}")
    for secret in (raw, raw.rstrip("="), "whsec_" + raw.rstrip("=")):
        verifier(secret).verify(headers, b"{}", now=NOW)


def test_previous_secrets_are_accepted() -> None:
    # Given a current secret and two rotated-out ones (space separated, stray spaces)
    third = base64.b64encode(b"third-key-third-key-third-key-33").decode()
    source = SourceSettings(
        secret=SecretStr(OTHER), previous_secrets=SecretStr(f" {third}  {SECRET} ")
    )
    v = WebhookVerifier.for_source(source, tolerance_seconds=TOLERANCE)
    # Then a signature by any of them verifies, and one by an unlisted secret does not
    for secret in (OTHER, third, SECRET):
        v.verify(sign(secret, "msg_1", NOW, b"{}"), b"{}", now=NOW)
    unlisted = "whsec_" + base64.b64encode(b"unlisted-key-unlisted-key-unlist").decode()
    assert reason(sign(unlisted, "msg_1", NOW, b"{}"), b"{}", v) == "no matching signature"


@pytest.mark.parametrize(
    "source",
    [
        SourceSettings(),
        SourceSettings(secret=SecretStr("  ")),
        SourceSettings(previous_secrets=SecretStr(SECRET)),  # an old secret alone is not enough
    ],
    ids=["none", "blank", "only-previous"],
)
def test_source_without_a_current_secret_refuses_everything(source: SourceSettings) -> None:
    v = WebhookVerifier.for_source(source, tolerance_seconds=TOLERANCE)
    assert not v.configured
    headers = sign(SECRET, "msg_1", NOW, b"{}")
    assert reason(headers, b"{}", v) == "no secret configured for this source"


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_!!!!", "not base64 at all", "whsec_a"])
def test_invalid_secrets_are_refused_at_construction(secret: str) -> None:
    with pytest.raises(SecretFormatError):
        decode_secret(secret)
    with pytest.raises(SecretFormatError):
        WebhookVerifier([secret], tolerance_seconds=TOLERANCE)


def good() -> dict[str, str]:
    return sign(SECRET, "msg_1", NOW, b"{}")


MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "empty": ({}, "missing signature headers"),
    "blank-id": ({"webhook-id": " "}, "missing signature headers"),
    "id-with-space": ({"webhook-id": "msg 1"}, "malformed webhook-id"),
    "id-non-ascii": ({"webhook-id": "msg_é"}, "malformed webhook-id"),
    "id-too-long": ({"webhook-id": "m" * 256}, "malformed webhook-id"),
    "ts-float": ({"webhook-timestamp": f"{NOW}.0"}, "malformed webhook-timestamp"),
    "ts-negative": ({"webhook-timestamp": f"-{NOW}"}, "malformed webhook-timestamp"),
    "ts-exponent": ({"webhook-timestamp": "1.78e9"}, "malformed webhook-timestamp"),
    "ts-huge": ({"webhook-timestamp": "9" * 40}, "malformed webhook-timestamp"),
    "ts-unicode-digits": ({"webhook-timestamp": "١٧٨٠٠٠٠٠٠٠"}, "malformed webhook-timestamp"),
    "ts-old": ({"webhook-timestamp": str(NOW - TOLERANCE - 1)}, "timestamp too old"),
    "ts-new": ({"webhook-timestamp": str(NOW + TOLERANCE + 1)}, "timestamp too new"),
    "sig-no-comma": ({"webhook-signature": "v1"}, "malformed webhook-signature"),
    "sig-empty-value": ({"webhook-signature": "v1,"}, "malformed webhook-signature"),
    "sig-bad-base64": ({"webhook-signature": "v1,@@@@"}, "malformed webhook-signature"),
    "sig-bad-padding": ({"webhook-signature": "v1,YWJ"}, "malformed webhook-signature"),
    "sig-short": ({"webhook-signature": "v1,YWJj"}, "malformed webhook-signature"),
    "sig-other-version": ({"webhook-signature": "v2,YWJj"}, "no v1 signature"),
    "sig-too-many": ({"webhook-signature": " ".join(["v1a,x"] * 17)}, "too many signatures"),
    "sig-wrong": (
        {"webhook-signature": "v1," + base64.b64encode(b"\0" * 32).decode()},
        "no matching signature",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_headers_become_one_signature_error(case: str) -> None:
    change, expected = MALFORMED[case]
    headers = {**good(), **change} if change else {}
    assert reason(headers, b"{}") == expected


def test_timestamps_at_the_tolerance_edges_are_accepted() -> None:
    for stamp in (NOW - TOLERANCE, NOW + TOLERANCE):
        verifier().verify(sign(SECRET, "m", stamp, b"{}"), b"{}", now=NOW)


def test_tolerance_beyond_the_library_default_is_honoured() -> None:
    stamp = NOW - 3000
    verifier(tolerance=3600).verify(sign(SECRET, "m", stamp, b"{}"), b"{}", now=NOW)
    assert reason(sign(SECRET, "m", stamp, b"{}"), b"{}", verifier(tolerance=60)) == (
        "timestamp too old"
    )


def test_non_utf8_body_is_a_signature_error() -> None:
    assert reason(good(), b"\xff\xfe") == "body is not UTF-8"


def test_headers_are_checked_before_the_body() -> None:
    # check_headers needs no body: stale or unsigned requests are refused before reading
    with pytest.raises(SignatureError):
        verifier().check_headers({}, now=NOW)
    signed = verifier().check_headers(good(), now=NOW)
    verifier().verify_body(signed, b"{}")


# --- properties -----------------------------------------------------------------------------

msg_ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
)
bodies = st.text(max_size=512).map(lambda text: text.encode("utf-8"))
offsets = st.integers(min_value=-TOLERANCE, max_value=TOLERANCE)


@given(msg_id=msg_ids, body=bodies, offset=offsets)
def test_sign_then_verify_round_trips(msg_id: str, body: bytes, offset: int) -> None:
    headers = sign(SECRET, msg_id, NOW + offset, body)
    signed = verifier(OTHER, SECRET).verify(headers, body, now=NOW)
    assert (signed.msg_id, signed.timestamp) == (msg_id, NOW + offset)


@given(body=bodies.filter(bool), data=st.data())
def test_any_single_byte_change_to_the_body_fails(body: bytes, data: st.DataObject) -> None:
    headers = sign(SECRET, "msg_1", NOW, body)
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1), label="index")
    byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != body[index]))
    tampered = body[:index] + bytes([byte]) + body[index + 1 :]
    with pytest.raises(SignatureError):
        verifier().verify(headers, tampered, now=NOW)


@given(body=bodies, other_id=msg_ids, shift=st.integers(min_value=1, max_value=TOLERANCE))
def test_changing_the_id_or_timestamp_fails(body: bytes, other_id: str, shift: int) -> None:
    headers = sign(SECRET, "msg_1", NOW, body)
    if other_id != "msg_1":
        with pytest.raises(SignatureError):
            verifier().verify({**headers, "webhook-id": other_id}, body, now=NOW)
    with pytest.raises(SignatureError):
        verifier().verify({**headers, "webhook-timestamp": str(NOW - shift)}, body, now=NOW)


@given(header=st.text(max_size=200), body=st.binary(max_size=64))
def test_arbitrary_signature_headers_never_crash(header: str, body: bytes) -> None:
    headers = {**sign(SECRET, "msg_1", NOW, b"{}"), "webhook-signature": header}
    with pytest.raises(SignatureError):
        verifier().verify(headers, body, now=NOW)
