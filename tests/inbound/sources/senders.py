"""Each sender's signing, written from its documentation (not from our verifier), and
requests as the sender would post them (worker/inbound/sources presets are tested on these).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from worker.config import SourceSettings
from worker.inbound.sources.adapter import Mapped, SourceAdapter
from worker.inbound.sources.verify import RequestParts

BASE_URL = "https://hooks.example.com/webhooks"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hmac_b64(key: str, message: bytes, algorithm: str = "sha256") -> str:
    return b64(hmac.new(key.encode(), message, algorithm).digest())


def hmac_hex(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def compact(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# --- senders ------------------------------------------------------------------------------


def shopify_headers(
    body: bytes, secret: str, topic: str, *, event_id: str = "ev-1", webhook_id: str = "wh-1"
) -> dict[str, str]:
    """Shopify: base64 HMAC-SHA256 of the raw body with the app's client secret."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": hmac_b64(secret, body),
        "X-Shopify-Shop-Domain": "demo.myshopify.com",
        "X-Shopify-API-Version": "2025-10",
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": "2026-11-20T10:00:00.000Z",
    }


def stripe_headers(body: bytes, *secrets: str, timestamp: int | None = None) -> dict[str, str]:
    """Stripe: `t=<unix>,v1=<hex>` over "{t}.{body}", one v1 per secret (rolling)."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + body
    v1 = ",".join(f"v1={hmac_hex(s, signed)}" for s in secrets)
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={t},{v1}"}


def hubspot_v3_headers(
    method: str, url: str, body: bytes, secret: str, timestamp_ms: int | None = None
) -> dict[str, str]:
    """HubSpot v3: base64 HMAC-SHA256 of method + URI + body + timestamp (ms)."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    message = method.encode() + url.encode() + body + str(ts).encode()
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": hmac_b64(secret, message),
        "X-HubSpot-Request-Timestamp": str(ts),
    }


def square_headers(url: str, body: bytes, key: str) -> dict[str, str]:
    """Square: base64 HMAC-SHA256 of notification URL + body (and the legacy SHA-1 header)."""
    return {
        "Content-Type": "application/json",
        "x-square-hmacsha256-signature": hmac_b64(key, url.encode() + body),
        "x-square-signature": hmac_b64(key, url.encode() + body, "sha1"),
        "square-environment": "Production",
    }


def woo_headers(body: bytes, secret: str, topic: str, delivery: str = "101") -> dict[str, str]:
    """WooCommerce: base64 HMAC-SHA256 of the raw body with the webhook's secret."""
    resource, _, event = topic.partition(".")
    return {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": "https://shop.example.com/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": hmac_b64(secret, body),
        "X-WC-Webhook-ID": "7",
        "X-WC-Webhook-Delivery-ID": delivery,
    }


def klaviyo_headers(
    body: bytes, secret: str, webhook_id: str = "wh_1", timestamp: int | None = None
) -> dict[str, str]:
    """Klaviyo system webhooks: hex HMAC-SHA256 of body + Klaviyo-Timestamp (C)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "Klaviyo-Webhook-Id": webhook_id,
        "Klaviyo-Timestamp": ts,
        "Klaviyo-Signature": hmac_hex(secret, body + ts.encode()),
    }


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64(f"{user}:{password}".encode())}


# --- running an adapter offline -----------------------------------------------------------


def parts(url: str, headers: dict[str, str], method: str = "POST") -> RequestParts:
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    return RequestParts(method=method, url=url, headers=headers, query=query)


def adapter(kind: str, name: str | None = None, **settings: Any) -> SourceAdapter:
    return SourceAdapter(name or kind, SourceSettings.model_validate({"kind": kind, **settings}))


def run(
    source: SourceAdapter,
    body: bytes,
    headers: dict[str, str],
    url: str | None = None,
    *,
    now: float | None = None,
) -> Mapped:
    """Verify and map like the receiver; raises SignatureError / RefusedError."""
    request = parts(url or f"{BASE_URL}/{source.name}", headers)
    checked = source.check_headers(request, now=now)
    source.verify_body(checked, request, body)
    return source.map_request(checked, request, body)


def events(mapped: Mapped) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") for e in mapped.events]
