"""Airship Wallet callbacks parsed into neutral facts; the callback target registered once.

Airship POSTs to `{baseUrl}/v1/pass/install`, `/v1/pass/uninstall` and
`/v1/pass/{passId}/personalize` (the older tutorial: without `/v1`; both are read) with
`{passId, templateId, serialNumber, createdAt, updatedAt, externalId, platform}`. The vendor
signs nothing (V): passsync registers a base URL that carries its secret token as a path
segment (`.../providers/<account>/callbacks/<token>`), which the core compares in constant
time before this parser runs (and checks the appended path against `CALLBACK_PATH`); the
appended path arrives here as `request.path`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from worker.providers.port import CallbackError, CallbackFact, CallbackRequest, FactKind

EVENTS: dict[str, FactKind] = {"install": "installed", "uninstall": "removed"}
# The paths Airship appends to the base URL (with or without /v1: the docs disagree).
CALLBACK_PATH = r"(/v1)?/pass/(install|uninstall|[0-9]+/personalize)"
# Airship has one callback target per project; both events come to it.
SUBSCRIBED = ("install", "uninstall")


def event_of(path: str) -> str | None:
    """ "v1/pass/install", "/pass/uninstall", "v1/pass/42/personalize" -> the event's name."""
    parts = [p for p in path.strip("/").split("/") if p]
    if parts and parts[0] == "v1":
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] == "pass":
        return parts[-1].lower()
    return None


def parse_callback(request: CallbackRequest) -> list[CallbackFact]:
    """One fact per install or uninstall; personalize and anything else give none."""
    name = event_of(request.path) or request.query.get("event")
    kind = EVENTS.get(name or "")
    payload = _object(request.body)
    if kind is None:
        return []
    digest = hashlib.sha256((name or "").encode() + b"\n" + request.body).hexdigest()
    return [
        CallbackFact(
            callback_id=request.headers.get("webhook-id") or f"sha256:{digest}",
            kind=kind,
            provider_pass_id=_text(payload.get("passId")),
            platform=_platform(payload.get("platform")),
            occurred_at=_time(payload.get("updatedAt")),
            payload=payload,
        )
    ]


def subscribe(client: Any, url: str, token: str, events: tuple[str, ...]) -> list[str]:
    """ProviderKind.subscribe_callbacks: point the project's callbacks at passsync.

    Setting the target is idempotent (a project has one); the token travels as a path
    segment because Airship appends its own paths to the base URL.
    """
    client.register_callbacks(callback_base(url, token))
    return [e for e in events if e in EVENTS]


def callback_base(url: str, token: str) -> str:
    return f"{url.rstrip('/')}/{quote(token, safe='')}"


def simulate_device(base_url: str, pass_id: str, action: str, platform: str) -> bool:
    """The sandbox's phone: POST /_sandbox/passes/{id}/install|remove; True if it called back."""
    answer = httpx.post(
        f"{base_url.removesuffix('/v1')}/_sandbox/passes/{pass_id}/{action}",
        json={"platform": platform},
        timeout=30,
    )
    return answer.status_code == 200 and answer.json().get("sent", 0) >= 1


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


def _platform(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    low = value.lower()
    if low in ("ios", "apple", "iphone"):
        return "ios"
    if low in ("android", "google"):
        return "android"
    return low[:32]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
