"""The HTTP side of delivery: sign per Standard Webhooks and POST, never following redirects.

The signature comes from the same library and helper as the receiver's
(worker.inbound.signatures.sign); the timestamp is the attempt's, the id the event's.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

import httpx

from worker.config import ConfigError, DestinationSettings, OutboundSettings
from worker.db import utcnow
from worker.inbound.signatures import SecretFormatError, decode_secret, sign
from worker.outbox.store import Claimed, SendResult

log = logging.getLogger("passsync.outbox")


def _user_agent() -> str:
    try:
        return f"passsync/{version('passsync')}"
    except PackageNotFoundError:
        return "passsync"


def check_destinations(settings: OutboundSettings, *, resolve: bool = True) -> list[str]:
    """Start-up check: each secret must be a valid Standard Webhooks secret (ConfigError
    otherwise); returns warnings for hosts that do not resolve (the CRM may come later)."""
    warnings = []
    for name, destination in sorted(settings.destinations.items()):
        env = f"PASSSYNC_OUTBOUND__DESTINATIONS__{name.upper()}__SECRET"
        try:
            decode_secret(destination.secret.get_secret_value())
        except SecretFormatError as exc:
            where = f"outbound.destinations.{name}.secret"
            raise ConfigError(f"setting {where} ({env}): {exc}") from None
        host = urlsplit(destination.url).hostname or ""
        if resolve:
            try:
                socket.getaddrinfo(host, None)
            except OSError:
                warnings.append(f"outbound destination {name}: host {host!r} does not resolve")
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


class HttpTransport:
    """Posts claimed deliveries to their destinations; one pooled client per process."""

    def __init__(self, settings: OutboundSettings, client: httpx.Client | None = None) -> None:
        check_destinations(settings, resolve=False)
        self._destinations: Mapping[str, DestinationSettings] = settings.destinations
        timeout = httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds)
        self._client = client or httpx.Client(
            timeout=timeout,
            follow_redirects=False,  # a redirect is a failed attempt, never followed
            headers={"user-agent": _user_agent(), "content-type": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def send(self, claimed: Claimed) -> SendResult:
        """One signed POST; network errors become a result, never an exception."""
        destination = self._destinations[claimed.destination]
        started, clock = utcnow(), time.monotonic()
        body = claimed.body.encode("utf-8")
        headers = sign(destination.secret.get_secret_value(), claimed.webhook_id, started, body)
        try:
            response = self._client.post(destination.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return SendResult(started, _ms(clock), error="timeout")
        except httpx.HTTPError as exc:
            # The type only: messages can carry the URL, whose query may hold a token.
            return SendResult(started, _ms(clock), error=f"network error: {type(exc).__name__}")
        return SendResult(
            started,
            _ms(clock),
            status_code=response.status_code,
            retry_after=retry_after(response.headers.get("retry-after"), started),
        )


def _ms(clock: float) -> int:
    return int((time.monotonic() - clock) * 1000)


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), else None."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - now).total_seconds())
