"""Airship Wallet REST client: the PassProvider port over httpx, with bounded retries.

Paths and bodies follow the vendor's documentation and its own SDKs
(../shared/reference/passkit-airship.md §2); docs/airship.md lists what is unconfirmed and
the setting for each. Every call carries `Api-Revision: 1.2`. A pass is created on its
template under passsync's external id (`POST /pass/{templateId}/id/{externalId}`), updated by
that external id (`PUT /pass/template/{templateId}/id/{externalId}`), voided and unvoided by
the label of its `expirationDate` header, and deleted by id. Airship ids are integers; the
port's pass id is the id as a string.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from worker.providers.airship.auth import AirshipAuth, Credentials, Token
from worker.providers.airship.models import (
    EXPIRATION,
    flat_fields,
    public_url,
    text,
    to_provider_pass,
    wire_fields,
)
from worker.providers.airship.settings import AirshipSettings
from worker.providers.common.http import (
    Call,
    CallRecord,
    HttpCaller,
    InvalidBodyError,
    RetryPolicy,
    http_client,
    parse_retry_after,
    snippet,
)
from worker.providers.errors import (
    AlreadyExistsError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    RejectedError,
    TemplateNotFoundError,
    TransientError,
)
from worker.providers.paths import path_segment
from worker.providers.port import ProviderPass, ProviderTemplate

T = TypeVar("T")
__all__ = ["DEFAULT_PATHS", "AirshipClient", "CallRecord"]

# Relative to the API base (which ends in /v1).
DEFAULT_PATHS: dict[str, str] = {
    "create": "/pass/{templateId}/id/{externalId}",
    "create_plain": "/pass/{templateId}",
    "get": "/pass/{passId}",
    "get_by_external_id": "/pass/id/{externalId}",
    "update_by_external_id": "/pass/template/{templateId}/id/{externalId}",
    "update": "/pass/{passId}",
    "delete": "/pass/{passId}",
    "list_passes": "/pass",
    "stats": "/pass/id/{externalId}/stats",
    "list_templates": "/template/headers",
    "adaptive_link": "/links/adaptive",
    "callback_settings": "/project/{projectId}/settings/callback",
}
# How many passes' (template id, external id) a client remembers for updates by external id.
REMEMBERED_PASSES = 10_000


@dataclass(frozen=True, slots=True)
class _Spec:
    action: str
    method: str
    route: str
    path_params: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    pass_ref: str | None = None
    idempotent: bool = True
    gone_after_retry_is_success: bool = False


@dataclass(frozen=True)
class PassStatistics:
    """GET /pass/id/{externalId}/stats: how many passes, installed and uninstalled."""

    total: int
    installed: int
    uninstalled: int


class AirshipClient:
    """PassProvider for Airship Wallet plus lists, statistics, links and callbacks.

    Actions (CallRecord names): token, create, get, get_by_external_id, update, void,
    unvoid, push, delete, list_passes, list_templates, stats, adaptive_link,
    callback_settings.
    """

    name = "airship"

    def __init__(
        self,
        settings: AirshipSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        on_attempt: Callable[[CallRecord], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        credentials: Credentials | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._paths = {**DEFAULT_PATHS, **settings.paths}
        self._duplicate = re.compile(settings.duplicate_pattern)
        self.auth = AirshipAuth(
            settings,
            credentials=credentials,
            transport=transport,
            clock=clock,
            on_attempt=on_attempt,
        )
        self._caller = HttpCaller(RetryPolicy.of(settings), on_attempt=on_attempt, sleep=sleep)
        self._http = http_client(
            settings.api_base(),
            timeout_seconds=settings.timeout_seconds,
            connect_timeout_seconds=settings.connect_timeout_seconds,
            transport=transport,
            auth=self.auth,
            headers={"Api-Revision": settings.api_revision},
        )
        # pass id -> (template id, external id), to update by external id.
        self._known: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._known_lock = threading.Lock()
        self._templates: dict[str, dict[str, Any]] = {}

    # -- the port ------------------------------------------------------------------------------

    def create_pass(
        self, *, template_id: str, user_provided_id: str | None, fields: dict[str, Any]
    ) -> ProviderPass:
        """Create on the template under the external id; AlreadyExistsError when it is used.

        Airship answers a used external id with 400, like any invalid request: a 400 whose
        message does not say so is checked with a GET by the external id.
        """
        body: dict[str, Any] = {"fields": wire_fields(fields)}
        if user_provided_id is None:
            spec = _Spec(
                "create",
                "POST",
                "create_plain",
                {"templateId": template_id},
                body=body,
                idempotent=False,
            )
        else:
            spec = _Spec(
                "create",
                "POST",
                "create",
                {"templateId": template_id, "externalId": user_provided_id},
                body=body,
                pass_ref=user_provided_id,
            )
        try:
            created = self._call(spec, _object("create"))
        except RejectedError as exc:
            raise self._create_refusal(exc, template_id, user_provided_id) from None
        pass_id = text(created.get("id"))
        if pass_id is None:
            raise InvalidBodyError("create: the response holds no pass id")
        if user_provided_id is not None:
            self._remember(pass_id, template_id, user_provided_id)
        link = self._adaptive_link(template_id, user_provided_id, fields, created)
        return to_provider_pass(
            created,
            void_label=self._settings.void_label,
            external_id=user_provided_id,
            template_id=template_id,
            fields=fields,
            link=link,
        )

    def update_pass(self, pass_id: str, fields: dict[str, Any]) -> ProviderPass:
        """Partial update by external id (each field {value[, changeMessage]}); NotFoundError
        when the pass is gone."""
        body = {"fields": wire_fields(fields, change_message=self._settings.change_message)}
        self._update(pass_id, body, "update")
        return ProviderPass(pass_id=pass_id, fields=fields)

    def get_pass(self, identifier: str, *, template_id: str | None = None) -> ProviderPass:
        """By Airship pass id (digits) or by external id; NotFoundError if unknown.

        Airship's documented lookup by external id (`GET /pass/id/{externalId}`) takes no
        template, so `template_id` is not needed (passsync's external ids are unique anyway).
        """
        if identifier.isdigit():
            try:
                return self._pass(self.get_raw(identifier))
            except NotFoundError:
                pass
        spec = _Spec(
            "get_by_external_id",
            "GET",
            "get_by_external_id",
            {"externalId": identifier},
            pass_ref=identifier,
        )
        return self._pass(self._call(spec, _object("get_by_external_id")), external_id=identifier)

    def list_templates(self) -> list[ProviderTemplate]:
        """Every template header that is neither deleted nor disabled (paged)."""
        out: list[ProviderTemplate] = []
        for header in self.iter_template_headers():
            if header.get("deleted") or header.get("disabled"):
                continue
            template_id = text(header.get("id"))
            if template_id is None:
                continue
            self._templates[template_id] = header
            out.append(ProviderTemplate(template_id=template_id, name=str(header.get("name", ""))))
        return out

    def set_voided(self, pass_id: str, voided: bool) -> ProviderPass:
        """Void: the expirationDate label "voided"; unvoid: "valid" and a date ahead (V)."""
        s = self._settings
        if voided:
            expiry: dict[str, Any] = {"label": s.void_label}
        else:
            until = datetime.fromtimestamp(self._clock(), tz=UTC) + timedelta(
                days=s.unvoid_expiry_days
            )
            expiry = {"value": until.strftime("%Y-%m-%dT%H:%MZ"), "label": s.valid_label}
        self._update(pass_id, {"headers": {EXPIRATION: expiry}}, "void" if voided else "unvoid")
        return ProviderPass(pass_id=pass_id, voided=voided)

    def delete_pass(self, pass_id: str, *, missing_ok: bool = False) -> None:
        """DELETE /pass/{passId}; NotFoundError when already gone (unless missing_ok)."""
        spec = _Spec(
            "delete",
            "DELETE",
            "delete",
            {"passId": pass_id},
            pass_ref=pass_id,
            gone_after_retry_is_success=True,
        )
        try:
            self._call(spec, _ignore)
        except NotFoundError:
            if not missing_ok:
                raise
        with self._known_lock:
            self._known.pop(pass_id, None)

    def send_push(self, pass_id: str, message: str) -> None:
        """The lock-screen text: the push field set to the message with changeMessage "%@"
        (Airship shows a changed field's changeMessage; it has no documented push call)."""
        if not message.strip():
            raise RejectedError("push: the message text is empty")
        field_ = {self._settings.push_field: {"value": message, "changeMessage": "%@"}}
        self._update(pass_id, {"fields": field_}, "push")

    # -- passes --------------------------------------------------------------------------------

    def get_raw(self, pass_id: str) -> dict[str, Any]:
        """The raw pass object by Airship id; NotFoundError if unknown."""
        spec = _Spec("get", "GET", "get", {"passId": pass_id}, pass_ref=pass_id)
        found = self._call(spec, _object("get"))
        self._learn(found)
        return found

    def list_passes_page(
        self, template_id: str, *, page: int, page_size: int | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page (1-based) of a template's passes and the total count when given."""
        params = {
            "templateId": template_id,
            "pageSize": str(page_size or self._settings.page_size),
            "page": str(page),
        }
        spec = _Spec("list_passes", "GET", "list_passes", params=params)
        body = self._call(spec, _object("list_passes"))
        rows = body.get("passes", body.get("Passes"))
        if not isinstance(rows, list):
            raise InvalidBodyError("list_passes: the response holds no passes list")
        count = body.get("count")
        passes = [r for r in rows if isinstance(r, dict)]
        for row in passes:
            row.setdefault("templateId", template_id)
            self._learn(row)
        return passes, int(count) if isinstance(count, int) else None

    def iter_passes(self, template_id: str) -> Iterator[dict[str, Any]]:
        """Every pass of a template, page by page."""
        size = self._settings.page_size
        for page in range(1, self._settings.max_pages + 1):
            rows, count = self.list_passes_page(template_id, page=page, page_size=size)
            yield from rows
            if len(rows) < size or (count is not None and page * size >= count):
                return
        raise RejectedError(f"list_passes: more than max_pages={self._settings.max_pages} pages")

    def iter_template_headers(self) -> Iterator[dict[str, Any]]:
        size = self._settings.page_size
        for page in range(1, self._settings.max_pages + 1):
            params = {"pageSize": str(size), "page": str(page)}
            spec = _Spec("list_templates", "GET", "list_templates", params=params)
            body = self._call(spec, _object("list_templates"))
            rows = body.get("templateHeaders", body.get("templates"))
            if not isinstance(rows, list):
                raise InvalidBodyError("list_templates: the response holds no templateHeaders")
            yield from (r for r in rows if isinstance(r, dict))
            count = body.get("count")
            if len(rows) < size or (isinstance(count, int) and page * size >= count):
                return

    def statistics(self, external_id: str) -> PassStatistics:
        """GET /pass/id/{externalId}/stats (V): totals of installs and removals."""
        spec = _Spec("stats", "GET", "stats", {"externalId": external_id}, pass_ref=external_id)
        body = self._call(spec, _object("stats"))
        return PassStatistics(
            total=_count(body.get("total")),
            installed=_count(body.get("installed")),
            uninstalled=_count(body.get("uninstalled")),
        )

    def register_callbacks(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        """POST /project/{projectId}/settings/callback {baseUrl, headers} (idempotent: it sets
        the project's one callback target)."""
        project = self._settings.project_id
        if not project:
            raise RejectedError("callbacks: set the account's project_id (Wallet project id)")
        spec = _Spec(
            "callback_settings",
            "POST",
            "callback_settings",
            {"projectId": project},
            body={"baseUrl": base_url, "headers": headers or {}},
        )
        self._call(spec, _ignore)

    # -- credentials ---------------------------------------------------------------------------

    @property
    def void_label(self) -> str:
        return self._settings.void_label

    @property
    def auth_scheme(self) -> str:
        return self.auth.scheme

    def token(self) -> Token | None:
        return self.auth.token

    def set_credentials(self, credentials: Credentials) -> None:
        self.auth.set_credentials(credentials)

    def close(self) -> None:
        self._http.close()
        self.auth.close()

    def __enter__(self) -> AirshipClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _update(self, pass_id: str, body: dict[str, Any], action: str) -> None:
        """PUT by external id when the pass has one (else by id); NotFoundError when gone."""
        where = self._where(pass_id)
        if where is None:
            spec = _Spec(action, "PUT", "update", {"passId": pass_id}, body=body, pass_ref=pass_id)
        else:
            template_id, external_id = where
            spec = _Spec(
                action,
                "PUT",
                "update_by_external_id",
                {"templateId": template_id, "externalId": external_id},
                body=body,
                pass_ref=pass_id,
                # A push's lock-screen text could show twice.
                idempotent=action != "push",
            )
        self._call(spec, _ignore)

    def _where(self, pass_id: str) -> tuple[str, str] | None:
        with self._known_lock:
            known = self._known.get(pass_id)
        if known is not None:
            return known
        found = self.get_raw(pass_id)  # learns it when it has an external id
        external, template = text(found.get("externalId")), text(found.get("templateId"))
        return (template, external) if external and template else None

    def _learn(self, body: dict[str, Any]) -> None:
        pass_id, template = text(body.get("id")), text(body.get("templateId"))
        external = text(body.get("externalId"))
        if pass_id and template and external:
            self._remember(pass_id, template, external)

    def _remember(self, pass_id: str, template_id: str, external_id: str) -> None:
        with self._known_lock:
            self._known[pass_id] = (template_id, external_id)
            self._known.move_to_end(pass_id)
            while len(self._known) > REMEMBERED_PASSES:
                self._known.popitem(last=False)

    def _pass(self, body: dict[str, Any], external_id: str | None = None) -> ProviderPass:
        self._learn(body)
        return to_provider_pass(body, void_label=self._settings.void_label, external_id=external_id)

    def _create_refusal(
        self, exc: RejectedError, template_id: str, external_id: str | None
    ) -> ProviderError:
        if exc.status == 404:
            return TemplateNotFoundError(exc.message, status=404, messages=exc.messages)
        if exc.status != 400 or external_id is None:
            return exc
        if any(self._duplicate.search(m) for m in exc.messages):
            return AlreadyExistsError(
                f"create: external id already used: {exc.message}",
                status=400,
                messages=exc.messages,
            )
        try:
            self.get_pass(external_id)
        except NotFoundError:
            return exc
        return AlreadyExistsError(
            f"create: external id already used (400, found by GET): {exc.message}",
            status=400,
            messages=exc.messages,
        )

    def _adaptive_link(
        self,
        template_id: str,
        external_id: str | None,
        fields: dict[str, Any],
        created: dict[str, Any],
    ) -> str | None:
        """One link for both platforms (wadl) to this pass's data; None when off or refused."""
        s = self._settings
        if not s.adaptive_links or external_id is None:
            return None
        ios, android = self._template_pair(template_id)
        body: dict[str, Any] = {
            "iosTemplateId": _int_or_text(ios),
            "androidTemplateId": _int_or_text(android),
            "payload": {"externalId": external_id, "fields": wire_fields(fields)},
        }
        if s.landing_page_url:
            body["landingPageUrl"] = s.landing_page_url
        spec = _Spec("adaptive_link", "POST", "adaptive_link", body=body, pass_ref=external_id)
        try:
            answer = self._call(spec, _object("adaptive_link"))
        except ProviderError:
            # The pass exists; the link is a convenience (the pass's own page stays its link),
            # and a failure here must not make the engine create the pass again.
            return public_url(created)
        return public_url(answer) or _first_url(answer) or public_url(created)

    def _template_pair(self, template_id: str) -> tuple[str, str]:
        """(Apple template, Google template) of the same name, else this one for both."""
        header = self._templates.get(template_id)
        if header is None:
            return template_id, template_id
        same = [
            (text(h.get("id")) or "", str(h.get("vendor", "")).lower())
            for h in self._templates.values()
            if h.get("name") == header.get("name")
        ]
        ios = next((i for i, v in same if v == "apple"), template_id)
        android = next((i for i, v in same if v == "google"), template_id)
        return ios, android

    def _call(self, spec: _Spec, parse: Callable[[Any], T]) -> T:
        template = self._paths[spec.route]
        path = template.format(
            **{
                name: path_segment(value, action=spec.action, what=name)
                for name, value in spec.path_params.items()
            }
        )
        content = None if spec.body is None else json.dumps(spec.body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None

        def send() -> httpx.Response:
            return self._http.request(
                spec.method, path, params=spec.params, content=content, headers=headers
            )

        call = Call(
            spec.action,
            spec.method,
            template,
            spec.pass_ref,
            idempotent=spec.idempotent,
            gone_after_retry_is_success=spec.gone_after_retry_is_success,
        )
        return self._caller.call(call, send, lambda r: self._interpret(spec.action, r), parse)

    def _interpret(self, action: str, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 429:
            parsed = parse_retry_after(response.headers.get(self._settings.retry_after_header))
            wait = self._settings.default_retry_after_seconds if parsed is None else parsed
            raise RateLimitedError(
                f"{action}: rate limited by Airship (429); retry after {wait:g}s",
                retry_after=wait,
            )
        messages = error_messages(_body_or_text(response)) if status >= 400 else []
        reason = f": {'; '.join(messages)}" if messages else ""
        if status >= 500:
            raise TransientError(f"{action}: Airship answered {status}{reason}", status=status)
        if status in (401, 403):
            what = (
                "the OAuth client and its scopes"
                if self._settings.auth == "oauth2"
                else "the project key and secret"
            )
            raise RejectedError(
                f"{action}: Airship refused the credentials ({status}){reason}; check {what} "
                f"and the region ({self._settings.region})",
                status=status,
                messages=messages,
            )
        if status == 404:
            raise NotFoundError(f"{action}: not found (404){reason}", status=404, messages=messages)
        if status >= 400:
            raise RejectedError(
                f"{action}: rejected ({status}){reason}", status=status, messages=messages
            )
        if status >= 300:
            raise RejectedError(f"{action}: unexpected redirect ({status})", status=status)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "unknown content type")
            raise InvalidBodyError(
                f"{action}: expected JSON but got {kind} (status {status}): "
                f"{snippet(response.text)!r}",
                status=status,
            ) from None


# -- parsing helpers (pure) ------------------------------------------------------------------


def error_messages(body: Any) -> list[str]:
    """Reasons from {code, description, details[, fieldErrors]} or {error, error_code, details}."""
    if body is None:
        return []
    if isinstance(body, str):
        flat = snippet(body)
        return [flat] if flat else []
    if not isinstance(body, dict):
        return [snippet(str(body))]
    messages: list[str] = []
    for key in ("description", "error", "details", "message"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            messages.append(value.strip())
    errors = body.get("fieldErrors")
    for item in errors if isinstance(errors, list) else []:
        if isinstance(item, dict) and isinstance(item.get("message"), str):
            messages.append(item["message"])
    return messages


def _body_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _object(action: str) -> Callable[[Any], dict[str, Any]]:
    def parse(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidBodyError(f"{action}: the response is not a JSON object")
        return body

    return parse


def _ignore(_body: Any) -> None:
    """For calls whose success body carries nothing we use ({ticketId}, {})."""


def _count(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _int_or_text(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _first_url(body: dict[str, Any]) -> str | None:
    for key in ("url", "iosUrl", "androidUrl", "link"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None


__all__ += ["PassStatistics", "error_messages", "flat_fields"]
