"""Whatever a correctly signed sender posts, a preset maps it, ignores it or refuses it (4xx):
it never raises anything else (which the receiver would answer 500, inviting retries)."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.inbound.signatures import SignatureError
from worker.inbound.sources.adapter import RefusedError, SourceAdapter

from .senders import (
    BASE_URL,
    adapter,
    hubspot_v3_headers,
    klaviyo_headers,
    shopify_headers,
    square_headers,
    stripe_headers,
    woo_headers,
)

SECRET = "fuzz-secret-0123456789abcdef"
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["COMPLETED", "paid", "won", "processing", "2026-11-20T10:00:00Z", "1e999"])
    | st.sampled_from([10**400, -(10**400), 2**63, 1e308])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "email",
                    "name",
                    "customer",
                    "data",
                    "object",
                    "payment",
                    "status",
                    "type",
                    "created",
                    "meta",
                    "entity",
                    "action",
                    "topic",
                    "profile",
                    "customer_id",
                    "total",
                    "amount_money",
                    "amount",
                    "occurredAt",
                    "objectId",
                    "subscriptionType",
                    "emails",
                    "primary",
                    "value",
                    "previous",
                    "updated_at",
                    "financial_status",
                    "metadata",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=30,
)
TYPES = {
    "shopify": [
        "customers/create",
        "orders/paid",
        "orders/updated",
        "subscription_contracts/cancel",
    ],
    "stripe": ["customer.created", "invoice.paid", "charge.refunded", "checkout.session.completed"],
    "square": ["customer.created", "payment.updated", "refund.created", "subscription.updated"],
    "woocommerce": ["customer.created", "order.updated", "order.created"],
}


def signed(kind: str, body: bytes, sender_type: str) -> dict[str, str]:
    if kind == "shopify":
        return shopify_headers(body, SECRET, sender_type)
    if kind == "stripe":
        return stripe_headers(body, SECRET)
    if kind == "square":
        return square_headers(f"{BASE_URL}/{kind}", body, SECRET)
    if kind == "woocommerce":
        return woo_headers(body, SECRET, sender_type)
    if kind == "hubspot":
        return hubspot_v3_headers("POST", f"{BASE_URL}/{kind}", body, SECRET)
    return klaviyo_headers(body, SECRET)


ADAPTERS = {
    kind: adapter(kind, secret=SECRET, **({"target": "scans"} if kind == "square" else {}))
    for kind in ("shopify", "stripe", "square", "woocommerce", "hubspot", "klaviyo")
}


def survive(source: SourceAdapter, kind: str, payload: Any, sender_type: str) -> None:
    from worker.inbound.sources.verify import RequestParts

    body = json.dumps(payload).encode()
    parts = RequestParts("POST", f"{BASE_URL}/{kind}", signed(kind, body, sender_type), {})
    try:
        checked = source.check_headers(parts, now=time.time())
        source.verify_body(checked, parts, body)
        mapped = source.map_request(checked, parts, body)
    except (SignatureError, RefusedError):
        return
    for event in mapped.events:
        event.model_dump_json()  # what the ledger stores must serialise
    for item in mapped.ignored:
        json.dumps(item.payload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(TYPES)),
    payload=json_values,
    pick=st.integers(min_value=0, max_value=3),
)
def test_single_event_presets_never_fail_on_signed_input(
    kind: str, payload: Any, pick: int
) -> None:
    types = TYPES[kind]
    sender_type = types[pick % len(types)]
    if kind in ("stripe", "square") and isinstance(payload, dict):
        payload = {**payload, "type": sender_type}
    survive(ADAPTERS[kind], kind, payload, sender_type)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["hubspot", "klaviyo"]), items=st.lists(json_values, max_size=5))
def test_batch_presets_never_fail_on_signed_input(kind: str, items: list[Any]) -> None:
    payload: Any = items if kind == "hubspot" else {"data": items, "meta": {}}
    survive(ADAPTERS[kind], kind, payload, "")
