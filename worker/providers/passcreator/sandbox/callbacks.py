"""The sandbox calls back like Passcreator: POSTs pass events to the subscribed target URLs."""

from __future__ import annotations

from typing import Any

import httpx

from worker.providers.passcreator.sandbox.store import StoredHook, StoredPass

TIMEOUT_SECONDS = 5.0


class CallbackSender:
    """Sends each event to every hook subscribed to it; keeps a log for /_sandbox/callbacks."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, hooks: list[StoredHook], event: str, payload: dict[str, Any]) -> int:
        """Deliver once to each matching hook (no retries, like retryEnabled=false)."""
        targets = [h.target_url for h in hooks if h.event == event and h.target_url]
        if not targets:
            return 0
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            for url in targets:
                self.sent.append({"event": event, "status": await _post(client, url, payload)})
        return len(targets)

    def reset(self) -> None:
        self.sent.clear()


async def _post(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> int | None:
    try:
        response = await client.post(url, json=payload)
    except httpx.HTTPError:
        return None
    return response.status_code


def pass_payload(stored: StoredPass, template_name: str | None) -> dict[str, Any]:
    """The pass_created payload shape (§6.2): identifiers, barcode, template name."""
    return {
        "identifier": stored.identifier,
        "passId": stored.identifier,
        "uniqueIdentifier": stored.barcode_value,
        "userProvidedId": stored.user_provided_id,
        "passTemplate": template_name,
    }
