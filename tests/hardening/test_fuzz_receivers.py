"""A Hypothesis fuzzer for the signed receivers (/webhooks, /scans) and provider callbacks.

Bodies: nesting, NaN/Infinity, huge numbers, any unicode (NUL, lone surrogates), duplicate
keys, random JSON; wrong content types, timestamps far off, several (and broken) signatures.
Property: never an answer >= 500, and a request that is not accepted stores nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import hypothesis.strategies as st
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import SECRET
from tests.hardening.conftest import CALLBACK_TOKEN, CALLBACKS, nested, stored
from worker.db import Database
from worker.inbound.signatures import sign

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
raw_literals = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "1" * 400,
        "1" * 5000,
        '"\\u0000"',
        '"\\ud800"',
        '"\\udfff\\ud800"',
        '"' + "\u00e9\u4e2d\U0001f600" * 20 + '"',
        "[" * 2000 + "]" * 2000,
        "true",
        '"12"',
    ]
)


BROKEN_SIGNATURES = ["v1,AAAA", "v1,", "v2,abc", "v1,!!!!", "v1a,xx", ",", "v1," + "A" * 44]


def event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "evt_fuzz",
        "type": "customer.updated",
        "occurred_at": "2026-11-20T10:00:00+00:00",
        "customer": {"id": "cus_1"},
        "data": {},
    }
    body.update(overrides)
    return body


def scan(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "scan_fuzz", "scanned_at": "2026-11-20T10:00:00Z", "barcode": "b"}
    body.update(overrides)
    return body


@st.composite
def bodies(draw: st.DrawFn, base: Any) -> bytes:
    """A body near a valid one: a field replaced by hostile JSON, raw text spliced in, ..."""
    kind = draw(st.sampled_from(["field", "raw", "nested", "duplicate", "random", "valid"]))
    valid = base()
    if kind == "valid":
        return json.dumps(valid).encode()
    if kind == "random":
        return json.dumps(draw(json_values)).encode()
    field = draw(st.sampled_from(sorted(valid)))
    if kind == "field":
        return json.dumps({**valid, field: draw(json_values)}).encode()
    if kind == "nested":
        depth = draw(st.integers(min_value=1, max_value=400))
        return json.dumps({**valid, field: nested(depth)}).encode()
    if kind == "duplicate":
        text = json.dumps(valid)
        return (text[:-1] + f', "{field}": ' + draw(raw_literals) + "}").encode()
    text = json.dumps({**valid, field: "@@"})
    return text.replace('"@@"', draw(raw_literals)).encode()


@st.composite
def signed_headers(draw: st.DrawFn, body: bytes) -> dict[str, str]:
    """Signature headers: valid, stale, from the future, several, or broken."""
    offset = draw(st.sampled_from([0, 0, 0, -301, 301, -(10**6), 10**9]))
    try:
        headers = sign(
            SECRET, draw(st.sampled_from(["msg_1", "m" * 300])), int(time.time()) + offset, body
        )
    except (UnicodeDecodeError, ValueError, OverflowError):
        headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(time.time()))}
        headers["webhook-signature"] = "v1,AAAA"
    extra = draw(
        st.lists(
            st.sampled_from(
                ["v1,AAAA", "v1,", "v2,abc", "v1,!!!!", "v1a,xx", ",", "v1," + "A" * 44]
            ),
            max_size=20,
        )
    )
    if extra:
        order = [headers["webhook-signature"], *extra]
        if draw(st.booleans()):
            order.reverse()
        headers["webhook-signature"] = " ".join(order)
    headers["content-type"] = draw(
        st.sampled_from(
            ["application/json", "text/plain", "", "application/x-www-form-urlencoded", "a/b; x"]
        )
    )
    return {k: v for k, v in headers.items() if v}


def check(response: Any, db: Database, before: dict[str, int]) -> None:
    assert response.status_code < 500, response.text
    after = stored(db)
    if response.status_code >= 300:
        assert after == before, (response.status_code, response.text)
    else:
        accepted = response.json().get("accepted", 0) + int(bool(response.json().get("recorded")))
        assert sum(after.values()) - sum(before.values()) <= max(accepted, 0) + 1


@FUZZ
@given(data=st.data())
def test_the_webhook_receiver_survives_hostile_signed_requests(
    client: TestClient, db: Database, data: st.DataObject
) -> None:
    body = data.draw(bodies(event))
    headers = data.draw(signed_headers(body))
    before = stored(db)
    check(client.post("/webhooks/crm", content=body, headers=headers), db, before)


@FUZZ
@given(data=st.data())
def test_the_scan_receiver_survives_hostile_signed_requests(
    client: TestClient, db: Database, data: st.DataObject
) -> None:
    body = data.draw(bodies(scan))
    headers = data.draw(signed_headers(body))
    before = stored(db)
    check(client.post("/scans/crm", content=body, headers=headers), db, before)


@FUZZ
@given(data=st.data())
def test_the_callbacks_route_survives_hostile_requests(
    client: TestClient, db: Database, data: st.DataObject
) -> None:
    body = data.draw(bodies(lambda: {"identifier": "P1", "platform": "iOS"}))
    event_name = data.draw(st.sampled_from(["pass_created", "pushnotification_registered", "x"]))
    delivery = data.draw(st.one_of(st.none(), st.text(max_size=300), st.just("d" * 60_000)))
    headers: dict[str, Any] = {
        "content-type": data.draw(st.sampled_from(["application/json", "text/plain"]))
    }
    if delivery is not None:  # raw bytes: whatever a client puts in a header
        headers["webhook-id"] = delivery.encode("utf-8", "surrogatepass")
    token = data.draw(st.sampled_from([CALLBACK_TOKEN, "wrong", ""]))
    before = stored(db)
    response = client.post(
        CALLBACKS, params={"token": token, "event": event_name}, content=body, headers=headers
    )
    check(response, db, before)
