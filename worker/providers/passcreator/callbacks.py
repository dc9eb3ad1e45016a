"""Passcreator's callbacks (reference §6): parsed into neutral facts; subscribed idempotently."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

import httpx

from worker.providers.port import CallbackError, CallbackFact, CallbackRequest, FactKind

# Passcreator's event names (§6.1) -> neutral fact kinds; the scan event's name is unconfirmed.
EVENTS: dict[str, FactKind] = {
    "pass_created": "created",
    "pushnotification_registered": "installed",
    "first_pushnotification_registered": "installed",
    "pushnotification_unregistered": "removed",
    "pass_voided": "voided",
    "pass_scanned": "scanned",
    "app_scan": "scanned",
}
# What passsync subscribes by default (one URL per event: the event is in its query).
SUBSCRIBED = (
    "pass_created",
    "pushnotification_registered",
    "pushnotification_unregistered",
    "pass_voided",
    "pass_scanned",
)
PASS_ID_KEYS = ("identifier", "passId", "passIdentifier", "pass_id", "uid")
PLATFORM_KEYS = ("platform", "operatingSystem", "deviceType", "os")
BARCODE_KEYS = ("uniqueIdentifier", "barcodeValue")
TEMPLATE_KEYS = ("passTemplate", "passTemplateName")


def parse_callback(request: CallbackRequest) -> list[CallbackFact]:
    """The event comes from `?event=` (one URL per event) or the body's `event`/`type`; the
    id is the delivery's (`webhook-id`), else a digest of the event and the body."""
    payload = _object(request.body)
    event = request.query.get("event") or str(payload.get("event") or payload.get("type") or "")
    kind = EVENTS.get(event)
    if kind is None:
        return []
    digest = hashlib.sha256(event.encode() + b"\n" + request.body).hexdigest()
    return [
        CallbackFact(
            callback_id=request.headers.get("webhook-id") or f"sha256:{digest}",
            kind=kind,
            provider_pass_id=_first_text(payload, PASS_ID_KEYS),
            platform=normalize_platform(_first_text(payload, PLATFORM_KEYS)),
            occurred_at=None,
            payload=payload,
            barcode=_first_text(payload, BARCODE_KEYS),
            template=_first_text(payload, TEMPLATE_KEYS),
        )
    ]


def _object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise CallbackError("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise CallbackError("body must be a JSON object")
    return data


def normalize_platform(value: str | None) -> str | None:
    """ios, android, or the value lower-cased (the provider's spelling varies)."""
    if not value:
        return None
    low = value.lower()
    if low in ("ios", "iphone", "apple", "ipad", "applewallet"):
        return "ios"
    if low in ("android", "google", "googlewallet", "googlepay"):
        return "android"
    return low[:32]


def _first_text(payload: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = payload.get(key)
        if isinstance(value, str | int) and str(value):
            return str(value)[:255]
    return None


# (event, target_url) pairs the provider already holds, and a call that adds one.
ListHooks = Callable[[], Iterable[tuple[str | None, str | None]]]
AddHook = Callable[[str, str], object]


def callback_url(public_url: str, token: str, event: str) -> str:
    """The URL one event is delivered to: the token authenticates, the event names it."""
    separator = "&" if "?" in public_url else "?"
    return public_url + separator + urlencode({"token": token, "event": event})


def ensure_subscriptions(
    list_hooks: ListHooks, add_hook: AddHook, public_url: str, token: str, events: Iterable[str]
) -> list[str]:
    """Subscribe each event whose URL is not subscribed yet; returns the events added.

    Passcreator's subscribe is not idempotent (a repeat makes a twin hook), so this lists
    the hooks first and never subscribes an (event, URL) pair twice.
    """
    present = {(event, url) for event, url in list_hooks()}
    added: list[str] = []
    for event in events:
        url = callback_url(public_url, token, event)
        if (event, url) not in present:
            add_hook(event, url)
            added.append(event)
    return added


def subscribe(client: Any, url: str, token: str, events: tuple[str, ...]) -> list[str]:
    """ProviderKind.subscribe_callbacks: `client` is a PasscreatorClient."""
    from worker.providers.passcreator.models import WebhookSubscribe  # noqa: PLC0415

    return ensure_subscriptions(
        lambda: [(h.event, h.target_url) for h in client.list_webhooks()],
        lambda event, target: client.subscribe_webhook(
            WebhookSubscribe(event=event, target_url=target)
        ),
        url,
        token,
        events,
    )


def simulate_device(base_url: str, pass_id: str, action: str, platform: str) -> bool:
    """The sandbox's phone: POST /_sandbox/passes/{id}/install|remove; True if it called back."""
    answer = httpx.post(
        f"{base_url}/_sandbox/passes/{pass_id}/{action}", json={"platform": platform}, timeout=30
    )
    return answer.status_code == 200 and answer.json().get("sent") == 1
