"""Passcreator REST client: the PassProvider port over httpx, with bounded retries."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from worker.config import ConfigError, PasscreatorSettings
from worker.providers.errors import (
    AlreadyExistsError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from worker.providers.port import ProviderPass, ProviderTemplate

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
PATH_V3_CREATE = "/api/v3/pass"
PATH_V3_ITEM = "/api/v3/pass/{id}"
PATH_V1_ITEM = "/api/pass/{id}"
PATH_V1_PUSH = "/api/pass/{id}/sendpushnotification"
PATH_TEMPLATES = "/api/pass-template"
# Keys the create body sets itself; a caller's field of the same name must not override them.
_RESERVED_CREATE_KEYS = frozenset({"templateId", "userProvidedId", "enforceUniqueUserProvidedId"})


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One HTTP attempt, for the audit trail; holds no headers and never the API key."""

    action: str
    method: str
    path: str
    status: int | None
    duration_ms: float
    attempt: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    template: str
    path: str
    params: dict[str, str] | None
    body: dict[str, Any] | None


class _InvalidBodyError(TransientError):
    """A success status whose body is not the JSON we expect (HTML, null, garbage)."""


class PasscreatorClient:
    """PassProvider for Passcreator; every method raises only providers.errors types."""

    name = "passcreator"

    def __init__(
        self,
        settings: PasscreatorSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        on_attempt: Callable[[CallRecord], None] | None = None,
    ) -> None:
        if settings.api_key is None:
            raise ConfigError(
                "setting providers.passcreator.api_key "
                "(PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY): not set"
            )
        self._settings = settings
        self._on_attempt = on_attempt
        self._duplicate = re.compile(settings.duplicate_pattern)
        self._http = httpx.Client(
            base_url=settings.base_url,
            transport=transport,
            timeout=httpx.Timeout(settings.timeout_seconds),
            headers={
                "Authorization": settings.api_key.get_secret_value(),
                "Accept": "application/json",
            },
            follow_redirects=False,
        )

    # -- the port --------------------------------------------------------------------------

    def create_pass(
        self, *, template_id: str, user_provided_id: str, fields: dict[str, Any]
    ) -> ProviderPass:
        """Create with enforceUniqueUserProvidedId; AlreadyExistsError when the id is used."""
        extra = {k: v for k, v in fields.items() if k not in _RESERVED_CREATE_KEYS}
        body = {
            "data": {
                "templateId": template_id,
                "userProvidedId": user_provided_id,
                "enforceUniqueUserProvidedId": True,
                **extra,
            }
        }

        def parse(envelope: Any) -> ProviderPass:
            return _pass_from_write(
                "create_pass",
                envelope,
                pass_id=None,
                user_provided_id=user_provided_id,
                template_id=template_id,
                fields=extra,
            )

        params = {"async": "true" if self._settings.create_async else "false"}
        return self._call("create_pass", "POST", PATH_V3_CREATE, parse, params=params, body=body)

    def update_pass(self, pass_id: str, fields: dict[str, Any]) -> ProviderPass:
        """PATCH (merge) the fields; the returned pass's `fields` are the ones sent."""

        def parse(envelope: Any) -> ProviderPass:
            return _pass_from_write("update_pass", envelope, pass_id=pass_id, fields=fields)

        body = {"data": fields}
        return self._call("update_pass", "PATCH", PATH_V3_ITEM, parse, path_id=pass_id, body=body)

    def get_pass(self, identifier: str) -> ProviderPass:
        """v1 details by pass uid, userProvidedId or barcode value."""
        return self._call("get_pass", "GET", PATH_V1_ITEM, parse_v1_pass, path_id=identifier)

    def list_templates(self) -> list[ProviderTemplate]:
        return self._call("list_templates", "GET", PATH_TEMPLATES, parse_templates)

    def set_voided(self, pass_id: str, voided: bool) -> ProviderPass:
        """`PUT /api/pass/{uid}` with `{"voided": ...}` (answers 204); then the pass as stored."""
        action = "void_pass" if voided else "unvoid_pass"
        self._call(action, "PUT", PATH_V1_ITEM, _ignore, path_id=pass_id, body={"voided": voided})
        return ProviderPass(pass_id=pass_id, voided=voided)

    def delete_pass(self, pass_id: str) -> None:
        self._call("delete_pass", "DELETE", PATH_V3_ITEM, _ignore, path_id=pass_id)

    def send_push(self, pass_id: str, message: str) -> None:
        body = {"pushNotificationText": message}
        self._call("send_push", "POST", PATH_V1_PUSH, _ignore, path_id=pass_id, body=body)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PasscreatorClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport, retries, error mapping -------------------------------------------------

    def _call(
        self,
        action: str,
        method: str,
        template: str,
        parse: Callable[[Any], T],
        *,
        path_id: str | None = None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> T:
        """One logical call: up to max_attempts HTTP attempts, retrying only TransientError.

        `parse` runs inside each attempt, so an unreadable success body is retried and
        recorded as that attempt's outcome.

        A 429 is raised at once instead of being retried here: the pause belongs to the
        limiter that every worker shares, and sleeping inside one client would hold a worker
        slot while the others keep hitting the limit.
        """
        if path_id is not None and not path_id.strip():
            # An empty id would turn /api/v3/pass/{id} into the list endpoint.
            raise RejectedError(f"{action}: the pass identifier is empty")
        path = template if path_id is None else template.format(id=quote(path_id, safe=""))
        s = self._settings
        retrying = Retrying(
            stop=stop_after_attempt(s.max_attempts),
            # Jittered exponential backoff, so retrying workers do not hit the API in step.
            wait=wait_exponential(multiplier=s.backoff_seconds, max=s.backoff_max_seconds)
            + wait_random(0, s.backoff_seconds),
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                number = attempt.retry_state.attempt_number
                request = _Request(method, template, path, params, body)
                return self._attempt(action, request, number, parse)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _attempt(self, action: str, request: _Request, number: int, parse: Callable[[Any], T]) -> T:
        started = time.perf_counter()
        status: int | None = None
        outcome: Outcome = "ok"
        try:
            response = self._http.request(
                request.method, request.path, params=request.params, json=request.body
            )
            status = response.status_code
            return parse(self._interpret(action, response))
        except ProviderError as exc:
            outcome = _outcome_of(exc)
            raise
        except httpx.TimeoutException as exc:
            outcome = "timeout"
            # `from None`: httpx errors carry the request, whose headers hold the API key.
            raise TransientError(f"{action}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            outcome = "network_error"
            raise TransientError(f"{action}: network error ({type(exc).__name__})") from None
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self._record(
                CallRecord(
                    action, request.method, request.template, status, elapsed, number, outcome
                )
            )

    def _record(self, record: CallRecord) -> None:
        if self._on_attempt is None:
            return
        try:
            self._on_attempt(record)
        except Exception:
            # The provider call has happened; a broken audit hook must not turn its real
            # outcome into a foreign exception the sync engine cannot classify.
            log.exception("on_attempt hook failed for %s attempt %d", record.action, record.attempt)

    def _interpret(self, action: str, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 429:
            retry_after = self._retry_after(response)
            raise RateLimitedError(
                f"{action}: rate limited by Passcreator (429); retry after {retry_after:g}s",
                retry_after=retry_after,
            )
        if status >= 500:
            raise TransientError(
                f"{action}: Passcreator answered {status}{_detail(response)}", status=status
            )
        if status >= 400:
            raise self._rejection(action, status, _error_messages(response))
        if status >= 300:
            # Redirects are not followed: a moved base URL is a configuration problem.
            raise RejectedError(f"{action}: unexpected redirect ({status})", status=status)
        if status == 204 or not response.content:
            return None
        body = _json_body(action, response)
        if isinstance(body, dict) and body.get("success") is False:
            raise self._rejection(action, status, envelope_messages(body))
        return body

    def _rejection(self, action: str, status: int, messages: list[str]) -> RejectedError:
        joined = "; ".join(messages)
        if status == 401:
            return RejectedError(
                f"{action}: Passcreator refused the API key (401)", status=401, messages=messages
            )
        if status == 404:
            return NotFoundError(f"{action}: not found (404)", status=404, messages=messages)
        if action == "create_pass" and status in (200, 400) and self._is_duplicate(messages):
            return AlreadyExistsError(
                f"{action}: userProvidedId already used: {joined}", status=400, messages=messages
            )
        return RejectedError(
            f"{action}: rejected ({status}): {joined}", status=status, messages=messages
        )

    def _is_duplicate(self, messages: list[str]) -> bool:
        return any(self._duplicate.search(message) for message in messages)

    def _retry_after(self, response: httpx.Response) -> float:
        parsed = parse_retry_after(response.headers.get(self._settings.retry_after_header))
        return self._settings.default_retry_after_seconds if parsed is None else parsed


# -- parsing helpers (pure) ----------------------------------------------------------------


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError) and not isinstance(exc, RateLimitedError)


def _outcome_of(exc: ProviderError) -> Outcome:
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, _InvalidBodyError):
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


def envelope_messages(body: Any) -> list[str]:
    """Reasons from an error envelope; `errors` items may be {property, message} or strings."""
    if not isinstance(body, dict):
        return [] if body is None else [_snippet(str(body))]
    messages: list[str] = []
    errors = body.get("errors")
    for item in errors if isinstance(errors, list) else []:
        if isinstance(item, str):
            messages.append(item)
        elif isinstance(item, dict):
            message = str(item.get("message", "")).strip()
            prop = item.get("property")
            messages.append(f"{prop}: {message}" if prop else message)
    description = body.get("description")
    if not messages and isinstance(description, str) and description.strip():
        messages.append(description.strip())
    return [m for m in messages if m]


def _json_body(action: str, response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "unknown content type")
        raise _InvalidBodyError(
            f"{action}: expected JSON but got {kind} (status {response.status_code}): "
            f"{_snippet(response.text)!r}",
            status=response.status_code,
        ) from None


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[:SNIPPET_CHARS] + "…"


def _error_messages(response: httpx.Response) -> list[str]:
    try:
        return envelope_messages(response.json())
    except ValueError:
        text = _snippet(response.text)
        return [text] if text else []


def _detail(response: httpx.Response) -> str:
    try:
        messages = envelope_messages(response.json())
    except ValueError:
        text = _snippet(response.text)
        return f": {text!r}" if text else ""
    return f": {'; '.join(messages)}" if messages else ""


def _ignore(_body: Any) -> None:
    """For calls whose success body carries nothing we use (204, or an unspecified shape)."""


def _unwrap(body: Any) -> Any:
    """v1 answers are bare; tolerate the v2/v3 envelope around them too."""
    if isinstance(body, dict) and "success" in body and "data" in body:
        return body["data"]
    return body


def _pass_from_write(
    action: str,
    envelope: Any,
    *,
    pass_id: str | None,
    fields: dict[str, Any],
    user_provided_id: str | None = None,
    template_id: str | None = None,
) -> ProviderPass:
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, dict):
        data = {}
    identifier = _str_or_none(data.get("identifier")) or pass_id
    if identifier is None:
        # A create that answers 2xx without an id cannot be adopted; retrying is safe
        # because the uniqueness guard turns a second create into AlreadyExistsError.
        raise _InvalidBodyError(f"{action}: the response holds no pass identifier")
    return ProviderPass(
        pass_id=identifier,
        user_provided_id=user_provided_id,
        template_id=template_id,
        fields=fields,
        download_page=_str_or_none(data.get("downloadPage") or data.get("linkToPassPage")),
        iphone_uri=_str_or_none(data.get("iPhoneUri")),
        android_uri=_str_or_none(data.get("androidUri") or data.get("AndroidUri")),
    )


def parse_templates(body: Any) -> list[ProviderTemplate]:
    """`[{identifier, name}]`, bare (v1) or inside an envelope."""
    body = _unwrap(body)
    if not isinstance(body, list):
        raise _InvalidBodyError("list_templates: expected a JSON list of templates")
    return [
        ProviderTemplate(template_id=str(item["identifier"]), name=str(item.get("name") or ""))
        for item in body
        if isinstance(item, dict) and item.get("identifier")
    ]


def parse_v1_pass(body: Any) -> ProviderPass:
    """Read a v1 pass object leniently (voided may be a bool or the string "true")."""
    body = _unwrap(body)
    if not isinstance(body, dict) or not _str_or_none(body.get("identifier")):
        raise _InvalidBodyError("get_pass: the response is not a pass object")
    return ProviderPass(
        pass_id=str(body["identifier"]),
        user_provided_id=_str_or_none(body.get("userProvidedId")),
        template_id=_str_or_none(body.get("passTemplateGuid")),
        voided=_truthy(body.get("voided")),
        fields=_additional_properties(body.get("additionalProperties")),
        download_page=_str_or_none(body.get("linkToPassPage") or body.get("downloadPage")),
        iphone_uri=_str_or_none(body.get("iPhoneUri")),
        android_uri=_str_or_none(body.get("androidUri") or body.get("AndroidUri")),
    )


def _additional_properties(value: Any) -> dict[str, Any]:
    """A name -> value mapping, or a list of {name|id, value} items."""
    if isinstance(value, dict):
        return dict(value)
    result: dict[str, Any] = {}
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and "value" in item:
            key = item.get("name") or item.get("id")
            if key:
                result[str(key)] = item["value"]
    return result


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _str_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
