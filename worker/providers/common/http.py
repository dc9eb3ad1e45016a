"""One logical provider call over httpx: bounded tenacity retries, one audit record per attempt.

Every platform client builds on `HttpCaller`: it sends (the kind's own request), interprets
the response (the kind's own status and error mapping, raising providers.errors types) and
parses the body. What is shared is the part that must behave the same everywhere: which
failures are retried (transient ones; a non-idempotent call only when the request was never
sent), a 429 raised at once (the pause belongs to the shared limiter), transport errors turned
into TransientError without the request attached (its headers hold the credentials), and the
CallRecord each attempt reports to the audit hook.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from worker.providers.errors import (
    AlreadyExistsError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    TransientError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

Outcome = Literal[
    "ok",
    "already_exists",
    "not_found",
    "rejected",
    "rate_limited",
    "server_error",
    "timeout",
    "network_error",
    "invalid_body",
]

SNIPPET_CHARS = 160


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One HTTP attempt, for the audit trail; holds no header, no body, no credential."""

    action: str
    method: str
    path: str
    status: int | None
    duration_ms: float
    attempt: int
    outcome: Outcome
    # The pass id or external id the call is about (never a body); None for other calls.
    pass_ref: str | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts, and the jittered exponential back-off between them."""

    max_attempts: int
    backoff_seconds: float
    backoff_max_seconds: float

    @classmethod
    def of(cls, settings: Any) -> RetryPolicy:
        """From an account's settings (`max_attempts`, `backoff_seconds`, `backoff_max_seconds`)."""
        return cls(settings.max_attempts, settings.backoff_seconds, settings.backoff_max_seconds)


@dataclass(frozen=True, slots=True)
class Call:
    """What the caller needs to know of one logical call besides how to send it."""

    action: str
    method: str
    template: str  # the route's path template, recorded in the audit (never the filled path)
    pass_ref: str | None = None
    # Retried after any transient failure only when repeating it cannot do harm twice.
    idempotent: bool = True
    # A 404 on a retry means our earlier, unanswered attempt did the delete.
    gone_after_retry_is_success: bool = False


class InvalidBodyError(TransientError):
    """A success status whose body is not the JSON we expect (HTML, null, garbage)."""


class NotSentError(TransientError):
    """The connection never carried the request, so even a non-idempotent call may repeat."""


class HttpCaller:
    """Runs calls with retries and reports every attempt to `on_attempt` (never raising)."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        on_attempt: Callable[[CallRecord], None] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._policy = policy
        self._on_attempt = on_attempt
        self._sleep = sleep

    def call(
        self,
        call: Call,
        send: Callable[[], httpx.Response],
        interpret: Callable[[httpx.Response], Any],
        parse: Callable[[Any], T],
    ) -> T:
        """Up to max_attempts attempts, retrying only TransientError (not a 429).

        `parse` runs inside each attempt, so an unreadable success body is retried and
        recorded as that attempt's outcome.
        """
        p = self._policy
        extra: dict[str, Any] = {} if self._sleep is None else {"sleep": self._sleep}
        retrying = Retrying(
            stop=stop_after_attempt(p.max_attempts),
            # Jittered exponential backoff, so retrying workers do not hit the API in step.
            wait=wait_exponential(multiplier=p.backoff_seconds, max=p.backoff_max_seconds)
            + wait_random(0, p.backoff_seconds),
            retry=retry_if_exception(retry_rule(call.idempotent)),
            reraise=True,
            **extra,
        )
        for attempt in retrying:
            with attempt:
                number = attempt.retry_state.attempt_number
                try:
                    return self._attempt(call, number, send, interpret, parse)
                except NotFoundError:
                    if call.gone_after_retry_is_success and number > 1:
                        return parse(None)
                    raise
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _attempt(
        self,
        call: Call,
        number: int,
        send: Callable[[], httpx.Response],
        interpret: Callable[[httpx.Response], Any],
        parse: Callable[[Any], T],
    ) -> T:
        started = time.perf_counter()
        status: int | None = None
        outcome: Outcome = "ok"
        action = call.action
        try:
            response = send()
            status = response.status_code
            return parse(interpret(response))
        except ProviderError as exc:
            outcome = outcome_of(exc)
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            outcome = "timeout" if isinstance(exc, httpx.TimeoutException) else "network_error"
            # `from None`: httpx errors carry the request, whose headers hold the credential.
            raise NotSentError(f"{action}: {transport_failure(exc)}") from None
        except httpx.TimeoutException as exc:
            outcome = "timeout"
            raise TransientError(f"{action}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            outcome = "network_error"
            raise TransientError(f"{action}: network error ({type(exc).__name__})") from None
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self.record(
                CallRecord(
                    action,
                    call.method,
                    call.template,
                    status,
                    elapsed,
                    number,
                    outcome,
                    call.pass_ref,
                )
            )

    def record(self, record: CallRecord) -> None:
        if self._on_attempt is None:
            return
        try:
            self._on_attempt(record)
        except Exception:
            # The provider call has happened; a broken audit hook must not turn its real
            # outcome into a foreign exception the sync engine cannot classify.
            log.exception("on_attempt hook failed for %s attempt %d", record.action, record.attempt)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError) and not isinstance(exc, RateLimitedError)


def retry_rule(idempotent: bool) -> Callable[[BaseException], bool]:
    """Idempotent calls retry any transient failure; others only a request never sent."""
    if idempotent:
        return is_retryable
    return lambda exc: isinstance(exc, NotSentError)


def transport_failure(exc: httpx.TransportError) -> str:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "network error"
    return f"{kind} ({type(exc).__name__})"


def outcome_of(exc: ProviderError) -> Outcome:
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, InvalidBodyError):
        return "invalid_body"
    if isinstance(exc, TransientError):
        return "server_error"
    if isinstance(exc, AlreadyExistsError):
        return "already_exists"
    if isinstance(exc, NotFoundError):
        return "not_found"
    return "rejected"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After value (delta-seconds or HTTP-date); None if unusable."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def snippet(text: str) -> str:
    """A body's text on one line, cut at SNIPPET_CHARS (for error messages)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[:SNIPPET_CHARS] + "…"


def http_client(
    base_url: str,
    *,
    timeout_seconds: float,
    connect_timeout_seconds: float,
    transport: httpx.BaseTransport | None = None,
    auth: httpx.Auth | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """The pooled client every kind uses: JSON accepted, redirects never followed (a moved
    base URL is a configuration problem, and a redirect would carry the credential along)."""
    return httpx.Client(
        base_url=base_url,
        transport=transport,
        auth=auth,
        timeout=httpx.Timeout(
            timeout_seconds, connect=min(connect_timeout_seconds, timeout_seconds)
        ),
        headers={"Accept": "application/json", **(headers or {})},
        follow_redirects=False,
    )
