"""Presets for Shopify, Stripe, Square and WooCommerce on the senders' documented examples."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from worker.inbound.signatures import SignatureError
from worker.inbound.sources.adapter import RefusedError

from .senders import (
    BASE_URL,
    adapter,
    compact,
    events,
    run,
    shopify_headers,
    square_headers,
    stripe_headers,
    woo_headers,
)

SHOPIFY_SECRET = "shpss_0123456789abcdef"
STRIPE_SECRET = "whsec_test_0123456789abcdef"
SQUARE_KEY = "sq-signature-key-0123"
WOO_SECRET = "woo secret with spaces & symbols!"

# Shopify's sample customer (its 64-bit id is one JavaScript rounds).
SHOPIFY_CUSTOMER: dict[str, Any] = {
    "id": 115310627314723954,
    "email": "john@example.com",
    "created_at": "2026-11-20T05:00:00-05:00",
    "updated_at": "2026-11-20T05:00:00-05:00",
    "first_name": "John",
    "last_name": "Smith",
    "orders_count": 0,
    "state": "disabled",
    "total_spent": "0.00",
    "phone": None,
    "tags": "vip",
    "admin_graphql_api_id": "gid://shopify/Customer/115310627314723954",
}


def shopify_order(**overrides: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "id": 820982911946154508,
        "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
        "email": "jon@example.com",
        "financial_status": "paid",
        "total_price": "403.00",
        "currency": "USD",
        "order_number": 1234,
        "source_name": "web",
        "location_id": 48752903,
        "created_at": "2026-11-20T09:00:00-05:00",
        "processed_at": "2026-11-20T09:01:00-05:00",
        "updated_at": "2026-11-20T09:02:00-05:00",
        "customer": {
            "id": 115310627314723954,
            "email": "john@example.com",
            "first_name": "John",
            "last_name": "Smith",
            "orders_count": 3,
        },
    }
    order.update(overrides)
    return order


# --- Shopify ---------------------------------------------------------------------------------


def test_shopify_customer_create_maps_to_customer_created_with_the_64_bit_id_intact() -> None:
    body = compact(SHOPIFY_CUSTOMER)
    mapped = run(
        adapter("shopify", secret=SHOPIFY_SECRET),
        body,
        shopify_headers(body, SHOPIFY_SECRET, "customers/create", event_id="e-77"),
    )
    assert events(mapped) == [
        {
            "id": "e-77:customers/create",
            "type": "customer.created",
            "occurred_at": "2026-11-20T05:00:00-05:00",
            "customer": {
                "id": "115310627314723954",
                "email": "john@example.com",
                "first_name": "John",
                "last_name": "Smith",
                "attributes": {
                    "tags": "vip",
                    "orders_count": 0,
                    "total_spent": 0.0,
                    "state": "disabled",
                },
            },
            "data": {},
        }
    ]
    assert mapped.ignored == [] and mapped.scans == []


def test_shopify_signature_over_other_bytes_is_refused() -> None:
    # Given a body re-serialised after signing (what JSON middleware does)
    body = compact(SHOPIFY_CUSTOMER)
    headers = shopify_headers(body, SHOPIFY_SECRET, "customers/create")
    pretty = json.dumps(SHOPIFY_CUSTOMER, indent=2).encode()
    with pytest.raises(SignatureError) as refused:
        run(adapter("shopify", secret=SHOPIFY_SECRET), pretty, headers)
    assert refused.value.reason == "no matching signature"


def test_shopify_wrong_secret_missing_header_and_no_secret_are_refused() -> None:
    body = compact(SHOPIFY_CUSTOMER)
    source = adapter("shopify", secret=SHOPIFY_SECRET)
    with pytest.raises(SignatureError, match="no matching signature"):
        run(source, body, shopify_headers(body, "another-secret", "customers/create"))
    headers = shopify_headers(body, SHOPIFY_SECRET, "customers/create")
    del headers["X-Shopify-Hmac-Sha256"]
    with pytest.raises(SignatureError, match="missing signature or credentials"):
        run(source, body, headers)
    with pytest.raises(SignatureError, match="no secret configured"):
        run(adapter("shopify"), body, shopify_headers(body, SHOPIFY_SECRET, "customers/create"))


def test_shopify_accepts_the_previous_client_secret_during_rotation() -> None:
    body = compact(SHOPIFY_CUSTOMER)
    source = adapter("shopify", secret="new-secret", previous_secrets="old-secret")
    mapped = run(source, body, shopify_headers(body, "old-secret", "customers/update"))
    assert [e.type for e in mapped.events] == ["customer.updated"]


def test_shopify_events_webhooks_headers_without_x_prefix_are_accepted() -> None:
    body = compact(SHOPIFY_CUSTOMER)
    headers = {
        k.removeprefix("X-"): v
        for k, v in shopify_headers(
            body, SHOPIFY_SECRET, "customers/update", event_id="e-9"
        ).items()
    }
    mapped = run(adapter("shopify", secret=SHOPIFY_SECRET), body, headers)
    assert [(e.id, e.type) for e in mapped.events] == [("e-9:customers/update", "customer.updated")]


def test_shopify_orders_paid_maps_the_nested_customer_and_the_order() -> None:
    body = compact(shopify_order())
    mapped = run(
        adapter("shopify", secret=SHOPIFY_SECRET),
        body,
        shopify_headers(body, SHOPIFY_SECRET, "orders/paid"),
    )
    [event] = events(mapped)
    assert event["type"] == "order.completed"
    assert event["occurred_at"] == "2026-11-20T09:01:00-05:00"
    assert event["customer"] == {
        "id": "115310627314723954",
        "email": "john@example.com",
        "first_name": "John",
        "last_name": "Smith",
        "attributes": {"orders_count": 3},
    }
    assert event["data"] == {
        "order_id": "820982911946154508",
        "order_number": 1234,
        "total": 403.0,
        "currency": "USD",
        "financial_status": "paid",
        "source_name": "web",
    }


def test_shopify_unmapped_topic_and_unmet_condition_are_ignored_with_the_reason() -> None:
    source = adapter("shopify", secret=SHOPIFY_SECRET)
    body = compact(shopify_order())
    created = run(source, body, shopify_headers(body, SHOPIFY_SECRET, "orders/create"))
    updated = run(source, body, shopify_headers(body, SHOPIFY_SECRET, "orders/updated"))
    assert created.events == [] and updated.events == []
    assert [(i.event_id, i.sender_type, i.reason) for i in created.ignored] == [
        (
            "ev-1:orders/create",
            "orders/create",
            "event type 'orders/create' is not mapped by source shopify",
        )
    ]
    assert [i.reason for i in updated.ignored] == [
        "'orders/updated' does not meet the conditions of its routes"
    ]
    assert created.ignored[0].payload["event"]["id"] == 820982911946154508


def test_shopify_refunded_order_maps_to_order_refunded_once_per_status() -> None:
    body = compact(shopify_order(financial_status="refunded"))
    mapped = run(
        adapter("shopify", secret=SHOPIFY_SECRET),
        body,
        shopify_headers(body, SHOPIFY_SECRET, "orders/updated"),
    )
    assert [(e.id, e.type) for e in mapped.events] == [
        ("shopify-refund:820982911946154508:refunded", "order.refunded")
    ]


def test_shopify_guest_order_is_ignored_for_want_of_a_customer() -> None:
    body = compact(shopify_order(customer=None))
    mapped = run(
        adapter("shopify", secret=SHOPIFY_SECRET),
        body,
        shopify_headers(body, SHOPIFY_SECRET, "orders/paid"),
    )
    assert mapped.events == []
    assert [i.reason for i in mapped.ignored] == ["order.completed: no customer id in the payload"]


def test_shopify_pos_sale_becomes_a_scan_when_the_source_targets_scans() -> None:
    source = adapter("shopify", secret=SHOPIFY_SECRET, target="scans", params={"pass_key": "card"})
    pos = compact(shopify_order(source_name="pos"))
    web = compact(shopify_order(source_name="web"))
    sale = run(source, pos, shopify_headers(pos, SHOPIFY_SECRET, "orders/paid", event_id="e-1"))
    online = run(source, web, shopify_headers(web, SHOPIFY_SECRET, "orders/paid", event_id="e-2"))
    assert [s.model_dump(mode="json") for s in sale.scans] == [
        {
            "id": "e-1:orders/paid",
            "scanned_at": "2026-11-20T09:01:00-05:00",
            "barcode": None,
            "pass_id": None,
            "customer_id": "115310627314723954",
            "pass_key": "card",
            "location": "48752903",
            "amount": 403.0,
            "attributes": {},
        }
    ]
    assert sale.events == [] and online.scans == []
    assert [i.reason for i in online.ignored] == [
        "'orders/paid' does not meet the conditions of its routes"
    ]


# --- Stripe ----------------------------------------------------------------------------------


def stripe_event(kind: str, obj: dict[str, Any], event_id: str = "evt_1NG8Du2eZvKYlo2C") -> bytes:
    return compact(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": 1795168800,  # 2026-11-20T10:00:00Z
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": "req_1", "idempotency_key": None},
            "type": kind,
            "data": {"object": obj},
        }
    )


STRIPE_CUSTOMER = {
    "id": "cus_NffrFeUfNV2Hib",
    "object": "customer",
    "email": "jenny.rosen@example.com",
    "name": "Jenny van Rosen",
    "phone": None,
    "metadata": {"tier": "gold", "points": "120"},
}


def test_stripe_customer_created_splits_the_name_and_keeps_metadata_as_attributes() -> None:
    body = stripe_event("customer.created", STRIPE_CUSTOMER)
    mapped = run(adapter("stripe", secret=STRIPE_SECRET), body, stripe_headers(body, STRIPE_SECRET))
    assert events(mapped) == [
        {
            "id": "evt_1NG8Du2eZvKYlo2C",
            "type": "customer.created",
            "occurred_at": "2026-11-20T10:00:00Z",
            "customer": {
                "id": "cus_NffrFeUfNV2Hib",
                "email": "jenny.rosen@example.com",
                "first_name": "Jenny",
                "last_name": "van Rosen",
                "attributes": {"tier": "gold", "points": "120"},
            },
            "data": {},
        }
    ]


def test_stripe_timestamp_outside_300_seconds_is_refused_in_both_directions() -> None:
    body = stripe_event("customer.created", STRIPE_CUSTOMER)
    source = adapter("stripe", secret=STRIPE_SECRET)
    now = time.time()
    with pytest.raises(SignatureError, match="timestamp too old"):
        run(source, body, stripe_headers(body, STRIPE_SECRET, timestamp=int(now) - 301), now=now)
    with pytest.raises(SignatureError, match="timestamp too new"):
        run(source, body, stripe_headers(body, STRIPE_SECRET, timestamp=int(now) + 302), now=now)
    ok = run(source, body, stripe_headers(body, STRIPE_SECRET, timestamp=int(now) - 299), now=now)
    assert len(ok.events) == 1


def test_stripe_any_matching_v1_passes_and_other_schemes_are_not_checked() -> None:
    body = stripe_event("customer.updated", STRIPE_CUSTOMER)
    source = adapter("stripe", secret=STRIPE_SECRET)
    # Rolling: the header carries a v1 for an expired secret and one for the current one.
    headers = stripe_headers(body, "whsec_expired", STRIPE_SECRET)
    headers["Stripe-Signature"] += ",v0=00ff"
    assert [e.type for e in run(source, body, headers).events] == ["customer.updated"]
    only_v0 = {"Stripe-Signature": f"t={int(time.time())},v0=00ff"}
    with pytest.raises(SignatureError, match="no v1 signature"):
        run(source, body, only_v0)
    with pytest.raises(SignatureError, match="malformed signature header"):
        run(source, body, {"Stripe-Signature": "garbage"})
    with pytest.raises(SignatureError, match="no matching signature"):
        run(source, body, stripe_headers(body, "whsec_wrong"))


def test_stripe_order_refund_and_subscription_end_map_to_canonical_types() -> None:
    source = adapter("stripe", secret=STRIPE_SECRET)
    cases = [
        (
            "invoice.paid",
            {
                "id": "in_1",
                "customer": "cus_1",
                "customer_email": "a@example.com",
                "customer_name": "Ada Lovelace",
                "amount_paid": 1999,
                "currency": "eur",
                "subscription": "sub_1",
            },
        ),
        (
            "charge.refunded",
            {"id": "ch_1", "customer": "cus_1", "amount_refunded": 500, "currency": "eur"},
        ),
        (
            "customer.subscription.deleted",
            {"id": "sub_1", "customer": "cus_1", "status": "canceled"},
        ),
        (
            "checkout.session.completed",
            {
                "id": "cs_1",
                "customer": "cus_1",
                "payment_status": "paid",
                "amount_total": 4200,
                "currency": "eur",
                "customer_details": {"email": "a@example.com"},
            },
        ),
    ]
    got = []
    for n, (kind, obj) in enumerate(cases):
        body = stripe_event(kind, obj, event_id=f"evt_{n}")
        [event] = run(source, body, stripe_headers(body, STRIPE_SECRET)).events
        got.append((event.type, event.customer.id, event.data))
    assert got == [
        (
            "order.completed",
            "cus_1",
            {"invoice": "in_1", "subscription": "sub_1", "total": 19.99, "currency": "eur"},
        ),
        ("order.refunded", "cus_1", {"charge": "ch_1", "refunded": 5.0, "currency": "eur"}),
        ("membership.expired", "cus_1", {"subscription": "sub_1", "status": "canceled"}),
        (
            "order.completed",
            "cus_1",
            {"checkout_session": "cs_1", "total": 42.0, "currency": "eur"},
        ),
    ]


def test_stripe_unsubscribed_type_is_ignored() -> None:
    body = stripe_event("payment_intent.succeeded", {"id": "pi_1", "customer": "cus_1"})
    mapped = run(adapter("stripe", secret=STRIPE_SECRET), body, stripe_headers(body, STRIPE_SECRET))
    assert [(i.event_id, i.reason) for i in mapped.ignored] == [
        (
            "evt_1NG8Du2eZvKYlo2C",
            "event type 'payment_intent.succeeded' is not mapped by source stripe",
        )
    ]


# --- Square ----------------------------------------------------------------------------------

SQUARE_URL = f"{BASE_URL}/square"


def square_customer(kind: str = "customer.created") -> bytes:
    return compact(
        {
            "merchant_id": "6SSW7HV8K2ST5",
            "type": kind,
            "event_id": "6a8f5f28-54a1-4eb0-a98a-3111513fd4fc",
            "created_at": "2026-11-20T10:00:00Z",
            "data": {
                "type": "customer",
                "id": "QPTXM8PQNX3Q726ZYHPMNP46XC",
                "object": {
                    "customer": {
                        "id": "QPTXM8PQNX3Q726ZYHPMNP46XC",
                        "given_name": "Amelia",
                        "family_name": "Earhart",
                        "email_address": "Amelia.Earhart@example.com",
                        "phone_number": "+1-212-555-4240",
                        "reference_id": "YOUR_REFERENCE_ID",
                        "created_at": "2026-11-20T09:59:00Z",
                        "updated_at": "2026-11-20T09:59:30Z",
                        "version": 0,
                    }
                },
            },
        }
    )


def square_payment(kind: str, status: str, event_id: str) -> bytes:
    return compact(
        {
            "merchant_id": "6SSW7HV8K2ST5",
            "type": kind,
            "event_id": event_id,
            "created_at": "2026-11-20T10:00:00Z",
            "data": {
                "type": "payment",
                "id": "KkAkhdMsgzn59SM8A89WgKwekxLZY",
                "object": {
                    "payment": {
                        "id": "KkAkhdMsgzn59SM8A89WgKwekxLZY",
                        "status": status,
                        "customer_id": "QPTXM8PQNX3Q726ZYHPMNP46XC",
                        "location_id": "S8GWD5R9QB376",
                        "amount_money": {"amount": 1250, "currency": "USD"},
                        "updated_at": "2026-11-20T10:00:05Z",
                    }
                },
            },
        }
    )


def test_square_customer_created_is_verified_over_url_and_body() -> None:
    body = square_customer()
    mapped = run(
        adapter("square", secret=SQUARE_KEY),
        body,
        square_headers(SQUARE_URL, body, SQUARE_KEY),
        SQUARE_URL,
    )
    assert events(mapped) == [
        {
            "id": "6a8f5f28-54a1-4eb0-a98a-3111513fd4fc",
            "type": "customer.created",
            "occurred_at": "2026-11-20T09:59:30Z",
            "customer": {
                "id": "QPTXM8PQNX3Q726ZYHPMNP46XC",
                "email": "Amelia.Earhart@example.com",
                "first_name": "Amelia",
                "last_name": "Earhart",
                "attributes": {"phone": "+1-212-555-4240", "reference_id": "YOUR_REFERENCE_ID"},
            },
            "data": {},
        }
    ]


def test_square_url_must_match_byte_for_byte_unless_the_public_url_is_configured() -> None:
    body = square_customer()
    signed_for = SQUARE_URL + "/"  # the URL typed in Square's console has a trailing slash
    headers = square_headers(signed_for, body, SQUARE_KEY)
    with pytest.raises(SignatureError, match="no matching signature"):
        run(adapter("square", secret=SQUARE_KEY), body, headers, SQUARE_URL)
    configured = adapter("square", secret=SQUARE_KEY, public_url=signed_for)
    assert len(run(configured, body, headers, "http://10.0.0.5:8080/webhooks/square").events) == 1


def test_square_legacy_sha1_signature_alone_is_accepted() -> None:
    body = square_customer("customer.updated")
    headers = square_headers(SQUARE_URL, body, SQUARE_KEY)
    del headers["x-square-hmacsha256-signature"]
    mapped = run(adapter("square", secret=SQUARE_KEY), body, headers, SQUARE_URL)
    assert [e.type for e in mapped.events] == ["customer.updated"]


def test_square_completed_payment_is_one_order_whichever_notification_reports_it() -> None:
    source = adapter("square", secret=SQUARE_KEY)
    ids = []
    for kind, status, event_id in [
        ("payment.created", "APPROVED", "e1"),
        ("payment.created", "COMPLETED", "e2"),
        ("payment.updated", "COMPLETED", "e3"),
    ]:
        body = square_payment(kind, status, event_id)
        mapped = run(source, body, square_headers(SQUARE_URL, body, SQUARE_KEY), SQUARE_URL)
        ids.append([(e.id, e.type, e.customer.id, e.data["total"]) for e in mapped.events])
    completed = (
        "square-payment:KkAkhdMsgzn59SM8A89WgKwekxLZY:completed",
        "order.completed",
        "QPTXM8PQNX3Q726ZYHPMNP46XC",
        12.5,
    )
    assert ids == [[], [completed], [completed]]


def test_square_pos_payment_becomes_a_scan() -> None:
    source = adapter("square", secret=SQUARE_KEY, target="scans")
    body = square_payment("payment.updated", "COMPLETED", "e3")
    mapped = run(source, body, square_headers(SQUARE_URL, body, SQUARE_KEY), SQUARE_URL)
    [scan] = mapped.scans
    assert (scan.id, scan.customer_id, scan.pass_key, scan.location, scan.amount) == (
        "square-payment:KkAkhdMsgzn59SM8A89WgKwekxLZY",
        "QPTXM8PQNX3Q726ZYHPMNP46XC",
        "loyalty",
        "S8GWD5R9QB376",
        12.5,
    )


# --- WooCommerce -----------------------------------------------------------------------------


def woo_order(status: str, customer_id: int = 12) -> dict[str, Any]:
    return {
        "id": 727,
        "status": status,
        "currency": "EUR",
        "total": "29.35",
        "customer_id": customer_id,
        "date_created_gmt": "2026-11-20T09:00:00",
        "date_modified_gmt": "2026-11-20T09:05:00",
        "date_paid_gmt": "2026-11-20T09:04:00",
        "billing": {"first_name": "John", "last_name": "Doe", "email": "john.doe@example.com"},
    }


def test_woocommerce_customer_created_and_paid_order() -> None:
    source = adapter("woocommerce", secret=WOO_SECRET)
    customer = compact(
        {
            "id": 25,
            "email": "john.doe@example.com",
            "first_name": "John",
            "last_name": "Doe",
            "username": "john.doe",
            "date_modified_gmt": "2026-11-20T08:00:00",
        }
    )
    order = compact(woo_order("processing"))
    first = run(source, customer, woo_headers(customer, WOO_SECRET, "customer.created", "201"))
    second = run(source, order, woo_headers(order, WOO_SECRET, "order.updated", "202"))
    assert events(first) == [
        {
            "id": "201:customer.created",
            "type": "customer.created",
            "occurred_at": "2026-11-20T08:00:00Z",
            "customer": {
                "id": "25",
                "email": "john.doe@example.com",
                "first_name": "John",
                "last_name": "Doe",
                "attributes": {"username": "john.doe"},
            },
            "data": {},
        }
    ]
    [paid] = events(second)
    assert (paid["id"], paid["type"], paid["customer"]["id"], paid["occurred_at"]) == (
        "woo-order:727:paid",
        "order.completed",
        "12",
        "2026-11-20T09:04:00Z",
    )
    assert paid["data"] == {
        "order_id": "727",
        "total": 29.35,
        "currency": "EUR",
        "status": "processing",
    }


def test_woocommerce_guest_pending_and_refunded_orders() -> None:
    source = adapter("woocommerce", secret=WOO_SECRET)
    outcomes = []
    for order in (woo_order("processing", 0), woo_order("pending"), woo_order("refunded")):
        body = compact(order)
        mapped = run(source, body, woo_headers(body, WOO_SECRET, "order.updated"))
        outcomes.append(
            ([(e.id, e.type) for e in mapped.events], [i.reason for i in mapped.ignored])
        )
    assert outcomes == [
        ([], ["guest order (customer_id 0): no customer to issue a pass to"]),
        ([], ["'order.updated' does not meet the conditions of its routes"]),
        ([("woo-order:727:refunded", "order.refunded")], []),
    ]


def test_woocommerce_unsigned_ping_is_answered_and_nothing_else_passes_unsigned() -> None:
    source = adapter("woocommerce", secret=WOO_SECRET)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    mapped = run(source, b"webhook_id=7", form)
    assert (mapped.ping, mapped.events, mapped.ignored) == (True, [], [])
    for body in (b"webhook_id=7&x=1", b'{"webhook_id": 7}'):
        with pytest.raises(SignatureError, match="missing signature or credentials"):
            run(source, body, form)
    bad = compact(woo_order("processing"))
    with pytest.raises(SignatureError, match="no matching signature"):
        run(source, bad, woo_headers(bad, "other", "order.updated"))


def test_malformed_json_under_a_valid_signature_is_refused_with_400() -> None:
    body = b'{"id": 1,'
    with pytest.raises(RefusedError) as refused:
        run(
            adapter("woocommerce", secret=WOO_SECRET),
            body,
            woo_headers(body, WOO_SECRET, "customer.created"),
        )
    assert (refused.value.status, refused.value.reason) == (400, "body is not valid JSON")


def test_woocommerce_without_a_delivery_id_dedups_on_the_content_not_the_webhook() -> None:
    source = adapter("woocommerce", secret=WOO_SECRET)
    ids = []
    for email in ("a@example.com", "b@example.com"):
        body = compact({"id": 25, "email": email})
        headers = woo_headers(body, WOO_SECRET, "customer.updated")
        del headers["X-WC-Webhook-Delivery-ID"]
        [event] = run(source, body, headers).events
        ids.append(event.id)
    assert ids[0] != ids[1] and all(i.startswith("sha256:") for i in ids)


def test_shopify_sample_and_stripe_test_mode_are_ignored_only_when_asked() -> None:
    body = compact(SHOPIFY_CUSTOMER)
    headers = shopify_headers(body, SHOPIFY_SECRET, "customers/create")
    default = run(adapter("shopify", secret=SHOPIFY_SECRET), body, headers)
    asked = adapter("shopify", secret=SHOPIFY_SECRET, params={"ignore_samples": "true"})
    filtered = run(asked, body, headers)
    assert (len(default.events), len(filtered.events)) == (1, 0)
    assert [i.reason for i in filtered.ignored] == ["Shopify's sample payload (test notification)"]
    other = compact({**SHOPIFY_CUSTOMER, "id": 42})
    assert (
        len(run(asked, other, shopify_headers(other, SHOPIFY_SECRET, "customers/create")).events)
        == 1
    )

    stripe_body = stripe_event("customer.created", STRIPE_CUSTOMER)  # livemode false
    test_mode = adapter("stripe", secret=STRIPE_SECRET, params={"ignore_test_mode": "true"})
    mapped = run(test_mode, stripe_body, stripe_headers(stripe_body, STRIPE_SECRET))
    assert [i.reason for i in mapped.ignored] == ["a test-mode event (livemode false)"]
