"""The sandbox calls back like PassKit: sink subscriptions get pass events by POST, PUT or DELETE.

Payload `SinkSubscriptionPayload {event, pass: Pass}` (V-code): `Pass {id, classId, protocol,
personDetails, metadata, recordData, externalId}`, `recordData` keys dotted
(`members.member.id`...). Names or numbers for the enums (the sample file shows numbers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT_SECONDS = 5.0
MEMBERSHIP_PROTOCOL = 100
# PassEventId names and their numbers (a bit mask in the proto).
PASS_EVENTS: dict[str, int] = {
    "PASS_EVENT_RECORD_CREATED": 1,
    "PASS_EVENT_INSTALLED": 2,
    "PASS_EVENT_RECORD_UPDATED": 4,
    "PASS_EVENT_UNINSTALLED": 8,
    "PASS_EVENT_INVALIDATED": 16,
    "PASS_EVENT_RECORD_DELETED": 32,
}
# The HTTP verb per event: created = POST, installed/uninstalled = PUT (V), delete = DELETE.
VERBS: dict[str, str] = {
    "PASS_EVENT_RECORD_CREATED": "POST",
    "PASS_EVENT_INSTALLED": "PUT",
    "PASS_EVENT_RECORD_UPDATED": "PUT",
    "PASS_EVENT_UNINSTALLED": "PUT",
    "PASS_EVENT_INVALIDATED": "PUT",
    "PASS_EVENT_RECORD_DELETED": "DELETE",
}
PASS_STATES = {
    "PASS_EVENT_RECORD_CREATED": "PASS_ISSUED",
    "PASS_EVENT_INSTALLED": "PASS_INSTALLED",
    "PASS_EVENT_UNINSTALLED": "PASS_UNINSTALLED",
    "PASS_EVENT_INVALIDATED": "PASS_INVALIDATED",
}


class SinkError(ValueError):
    """A sink subscription body the sandbox refuses (answered 400)."""


@dataclass
class Sink:
    """One webhook subscription of a program."""

    id: str
    class_id: str
    events: list[str]
    target_url: str
    body: dict[str, Any]

    def row(self) -> dict[str, Any]:
        return {**self.body, "id": self.id}


def read_sink(body: dict[str, Any], sink_id: str) -> Sink:
    """Validate a SinkSubscription; `configuration` is a JSON *string* (WebhookConfig)."""
    class_id = body.get("classId")
    if not isinstance(class_id, str) or not class_id:
        raise SinkError("classId is required")
    if body.get("configType", "WEBHOOK") != "WEBHOOK":
        raise SinkError("only configType WEBHOOK is supported by the sandbox")
    raw = body.get("configuration")
    if not isinstance(raw, str):
        raise SinkError("configuration must be a JSON string")
    try:
        config = json.loads(raw)
    except ValueError:
        raise SinkError("configuration is not valid JSON") from None
    target = config.get("targetUrl") if isinstance(config, dict) else None
    if not isinstance(target, str) or not target.startswith(("http://", "https://")):
        raise SinkError("configuration.targetUrl must be an http(s) URL")
    events = body.get("passEventId")
    if not isinstance(events, list) or not events:
        raise SinkError("passEventId must list at least one event")
    names = [_event_name(e) for e in events]
    return Sink(sink_id, class_id, names, target, {**body, "passEventId": names})


def _event_name(value: Any) -> str:
    if isinstance(value, str) and value in PASS_EVENTS:
        return value
    for name, number in PASS_EVENTS.items():
        if value == number:
            return name
    raise SinkError(f"unknown passEventId {value!r}")


def payload(
    event: str, member: dict[str, Any], *, platform: str | None, numeric: bool
) -> dict[str, Any]:
    """The webhook body for one member."""
    record = {
        "members.member.id": member["id"],
        "members.member.externalId": member.get("externalId", ""),
        "members.member.points": str(member.get("points", 0)),
        "members.tier.id": member.get("tierId", ""),
        "members.program.id": member.get("programId", ""),
    }
    found = member.get("person")
    person: dict[str, Any] = found if isinstance(found, dict) else {}
    for key in ("emailAddress", "displayName"):
        if person.get(key):
            record[f"person.{key}"] = person[key]
    metadata: dict[str, Any] = {}
    state = PASS_STATES.get(event)
    if state is not None:
        metadata["status"] = state
    if platform is not None:
        metadata["platform"] = platform
    return {
        "event": PASS_EVENTS[event] if numeric else event,
        "pass": {
            "id": member["id"],
            "classId": member.get("programId", ""),
            "protocol": MEMBERSHIP_PROTOCOL if numeric else "MEMBERSHIP",
            "externalId": member.get("externalId", ""),
            "personDetails": person,
            "metadata": metadata,
            "recordData": record,
        },
    }


class WebhookSender:
    """Delivers each event once to every sink of the member's program that asked for it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(
        self,
        sinks: list[Sink],
        event: str,
        member: dict[str, Any],
        *,
        platform: str | None = None,
        numeric: bool = False,
    ) -> int:
        targets = [s for s in sinks if s.class_id == member.get("programId") and event in s.events]
        if not targets:
            return 0
        body = payload(event, member, platform=platform, numeric=numeric)
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            for sink in targets:
                status = await _deliver(client, VERBS[event], sink.target_url, body)
                self.sent.append(
                    {
                        "event": event,
                        "memberId": member["id"],
                        "method": VERBS[event],
                        "status": status,
                    }
                )
        return len(targets)

    def reset(self) -> None:
        self.sent.clear()


async def _deliver(
    client: httpx.AsyncClient, method: str, url: str, body: dict[str, Any]
) -> int | None:
    try:
        response = await client.request(method, url, json=body)
    except httpx.HTTPError:
        return None
    return response.status_code
