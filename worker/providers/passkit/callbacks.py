"""PassKit webhooks ("sink subscriptions") parsed into neutral facts; subscribed idempotently.

A delivery is `SinkSubscriptionPayload {event, pass: Pass}` (V-code), the event by name
(`PASS_EVENT_INSTALLED`) or by number (2; PassKit's sample file shows numbers). PassKit sends
POST, PUT or DELETE depending on the event (V). The signature scheme is unconfirmed (U): the
callbacks URL carries passsync's token, which the core checks before this parser runs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from worker.providers.port import CallbackError, CallbackFact, CallbackRequest, FactKind

EVENT_NUMBERS: dict[int, str] = {
    1: "PASS_EVENT_RECORD_CREATED",
    2: "PASS_EVENT_INSTALLED",
    4: "PASS_EVENT_RECORD_UPDATED",
    8: "PASS_EVENT_UNINSTALLED",
    16: "PASS_EVENT_INVALIDATED",
    32: "PASS_EVENT_RECORD_DELETED",
}
EVENTS: dict[str, FactKind] = {
    "PASS_EVENT_RECORD_CREATED": "created",
    "PASS_EVENT_INSTALLED": "installed",
    "PASS_EVENT_UNINSTALLED": "removed",
    "PASS_EVENT_INVALIDATED": "voided",
}
# created = POST, installed/uninstalled = PUT, "POST, PUT or DELETE ... depending on the type"
# (V: help.passkit.com/en/articles/4739416): the receiver accepts all three.
METHODS = frozenset({"POST", "PUT", "DELETE"})
# What passsync subscribes by default (one sink per program, these events).
SUBSCRIBED = (
    "PASS_EVENT_RECORD_CREATED",
    "PASS_EVENT_INSTALLED",
    "PASS_EVENT_UNINSTALLED",
    "PASS_EVENT_INVALIDATED",
)
PLATFORM_KEYS = ("platform", "deviceType", "operatingSystem", "os", "lastInstalledPlatform")
TIME_KEYS = ("eventTime", "updated", "lastInstalledAt", "firstInstalledAt", "lastUninstalledAt")


def event_name(value: Any) -> str | None:
    """`PASS_EVENT_INSTALLED`, 2 or "2" -> the event's name; None for anything else."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return EVENT_NUMBERS.get(value)
    if isinstance(value, str) and value:
        return value.strip().upper()
    return None


def parse_callback(request: CallbackRequest) -> list[CallbackFact]:
    """One fact per tracked event; an untracked event (updated, deleted...) gives none."""
    payload = _object(request.body)
    name = event_name(payload.get("event") if "event" in payload else request.query.get("event"))
    kind = EVENTS.get(name or "")
    if kind is None:
        return []
    found = payload.get("pass")
    pass_obj: dict[str, Any] = found if isinstance(found, dict) else {}
    record = pass_obj.get("recordData")
    record = record if isinstance(record, dict) else {}
    meta = _metadata(pass_obj)
    digest = hashlib.sha256((name or "").encode() + b"\n" + request.body).hexdigest()
    return [
        CallbackFact(
            callback_id=request.headers.get("webhook-id") or f"sha256:{digest}",
            kind=kind,
            provider_pass_id=_text(pass_obj.get("id")) or _text(record.get("members.member.id")),
            platform=normalize_platform(_first(meta, PLATFORM_KEYS)),
            occurred_at=_time(_first(meta, TIME_KEYS)),
            payload=payload,
            barcode=None,
            template=None,
        )
    ]


def _metadata(pass_obj: dict[str, Any]) -> dict[str, Any]:
    # The proto says `metadata`; PassKit's sample file says `metaData`.
    for key in ("metadata", "metaData"):
        value = pass_obj.get(key)
        if isinstance(value, dict):
            return value
    return {}


def _object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise CallbackError("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise CallbackError("body must be a JSON object")
    return data


def _text(value: Any) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)[:255]
    return None


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def _time(value: Any) -> datetime | None:
    """RFC 3339 strings and {seconds, nanos} objects are both seen (C x2 disagree)."""
    if isinstance(value, dict) and isinstance(value.get("seconds"), int | str):
        try:
            return datetime.fromtimestamp(int(value["seconds"]), tz=UTC)
        except (ValueError, OverflowError, OSError):
            return None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def normalize_platform(value: Any) -> str | None:
    """ios, android, or the value lower-cased."""
    if not isinstance(value, str) or not value:
        return None
    low = value.lower()
    if low in ("ios", "iphone", "ipad", "apple", "applewallet", "apple_wallet"):
        return "ios"
    if low in ("android", "google", "googlepay", "googlewallet", "google_wallet", "gpay"):
        return "android"
    return low[:32]


def subscribe(client: Any, url: str, token: str, events: tuple[str, ...]) -> list[str]:
    """ProviderKind.subscribe_callbacks: one sink per program for `events`, never twice.

    Creating a sink is not idempotent, so the existing sinks are listed first and a program
    that already has one with this target URL is left alone. Returns the events newly added.
    """
    target = callback_url(url, token)
    present = {
        (str(s.get("classId")), _target_of(s))
        for s in client.list_webhooks()
        if isinstance(s, dict)
    }
    added: list[str] = []
    for program in client.list_programs():
        if (program.id, target) in present:
            continue
        client.subscribe_webhook(program.id, target, list(events))
        added.extend(e for e in events if e not in added)
    return added


def callback_url(public_url: str, token: str) -> str:
    separator = "&" if "?" in public_url else "?"
    return f"{public_url}{separator}{httpx.QueryParams({'token': token})}"


def _target_of(sink: dict[str, Any]) -> str | None:
    raw = sink.get("configuration")
    try:
        config = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    target = config.get("targetUrl") if isinstance(config, dict) else None
    return target if isinstance(target, str) else None


def simulate_device(base_url: str, pass_id: str, action: str, platform: str) -> bool:
    """The sandbox's phone: POST /_sandbox/members/{id}/install|remove; True if it called back."""
    answer = httpx.post(
        f"{base_url}/_sandbox/members/{pass_id}/{action}", json={"platform": platform}, timeout=30
    )
    return answer.status_code == 200 and answer.json().get("sent", 0) >= 1
