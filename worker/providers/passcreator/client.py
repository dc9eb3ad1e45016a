"""Passcreator REST client: the PassProvider port over httpx, with bounded retries."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from worker.config import ConfigError
from worker.providers.common.http import (
    Call,
    CallRecord,
    HttpCaller,
    InvalidBodyError,
    Outcome,
    RetryPolicy,
    http_client,
    parse_retry_after,
    snippet,
)
from worker.providers.errors import (
    AlreadyExistsError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TemplateNotFoundError,
    TransientError,
)
from worker.providers.passcreator.models import (
    AppScan,
    AppScanResult,
    PassCreate,
    PassDetails,
    PassExistence,
    PassPage,
    PassRow,
    PassWriteResult,
    TemplateCreate,
    TemplateDetails,
    TemplateStatistics,
    TemplateWriteResult,
    WebhookSubscribe,
    WebhookSubscription,
)
from worker.providers.passcreator.query import Operator, PassQuery
from worker.providers.passcreator.settings import PasscreatorSettings
from worker.providers.paths import path_segment
from worker.providers.port import ProviderPass, ProviderTemplate, TemplateField

log = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
IdentifierKind = Literal["user_provided_id", "pass_id", "barcode"]
TimeFrame = Literal["day", "week", "month", "year"]

# The default path of each endpoint, by route key; `providers.passcreator.paths` overrides any
# of them, because several are known only from client code (docs/passcreator.md).
DEFAULT_PATHS: dict[str, str] = {
    "pass_v3": "/api/v3/pass",
    "pass_v3_item": "/api/v3/pass/{id}",
    "pass_v1_item": "/api/pass/{id}",
    "send_push": "/api/pass/{id}/sendpushnotification",
    "list_templates": "/api/pass-template",
    "get_template": "/api/v2/pass-template/{id}/describe",
    # The documented (deprecated) describe: its dynamicFields.additionalProperties name the
    # properties a pass of the template takes; the v2 describe's answer is unconfirmed (§5).
    "template_fields": "/api/pass-template/{id}",
    "create_template": "/api/v2/pass-template",
    "update_template": "/api/v2/pass-template/{id}",
    "publish_template": "/api/v2/pass-template/{id}/publish",
    "delete_template": "/api/pass-template/{id}",
    "record_app_scan": "/api/appscan",
    "subscribe_webhook": "/api/hook/subscribe",
    "subscribe_webhook_template": "/api/hook/subscribe/{id}",
    "list_webhooks": "/api/hook/list",
    "template_statistics": "/api/pass/statistics/{id}",
}
# Keys the create body sets itself; a caller's field of the same name must not override them.
_RESERVED_CREATE_KEYS = frozenset({"templateId", "userProvidedId", "enforceUniqueUserProvidedId"})


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    template: str
    path: str
    params: dict[str, str] | None
    body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class _Spec:
    """What one logical call needs besides its parser."""

    action: str
    method: str
    route: str
    path_id: str | None = None
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    pass_ref: str | None = None
    # Retried after any transient failure only when repeating it cannot do harm twice.
    idempotent: bool = True
    # A 404 on a retry means our earlier, unanswered attempt did the delete.
    gone_after_retry_is_success: bool = False
    url: str | None = None


_InvalidBodyError = InvalidBodyError
__all__ = ["CallRecord", "Outcome", "PasscreatorClient", "parse_retry_after"]


class PasscreatorClient:
    """PassProvider for Passcreator plus its other actions; raises only providers.errors types.

    The fourteen actions (their CallRecord action names in brackets): pass_exists
    [pass_exists], list_passes [list_passes], search_passes [search_passes], query_passes
    [query_passes], list_templates [list_templates], create_pass [create_pass], update_pass
    [update_pass], delete_pass [delete_pass], get_pass [get_pass], get_template
    [get_template], template_fields [template_fields], create_template [create_template],
    update_template [update_template], delete_template [delete_template].
    """

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
                "setting providers.<account>.api_key of a Passcreator account "
                "(PASSSYNC_PROVIDERS__<ACCOUNT>__API_KEY): not set"
            )
        self._settings = settings
        self._duplicate = re.compile(settings.duplicate_pattern)
        self._unknown_template_re = re.compile(settings.unknown_template_pattern)
        self._paths = {**DEFAULT_PATHS, **settings.paths}
        self._base = httpx.URL(settings.base_url)
        self._caller = HttpCaller(RetryPolicy.of(settings), on_attempt=on_attempt)
        self._http = http_client(
            settings.base_url,
            timeout_seconds=settings.timeout_seconds,
            connect_timeout_seconds=settings.connect_timeout_seconds,
            transport=transport,
            headers={"Authorization": settings.api_key.get_secret_value()},
        )

    # -- passes ----------------------------------------------------------------------------

    def create_pass(
        self,
        *,
        template_id: str,
        user_provided_id: str | None,
        fields: dict[str, Any],
        barcode_value: str | None = None,
        grouping_identifier: str | None = None,
        enforce_unique: bool = True,
    ) -> PassWriteResult:
        """v3 create; with a userProvidedId the uniqueness guard is on unless told otherwise.

        AlreadyExistsError when the guard finds the id used. Only a guarded create is retried
        after an unanswered attempt: the guard turns a repeat into AlreadyExistsError.
        """
        extra = {k: v for k, v in fields.items() if k not in _RESERVED_CREATE_KEYS}
        guarded = user_provided_id is not None and enforce_unique
        request = PassCreate(
            template_id=template_id,
            user_provided_id=user_provided_id,
            enforce_unique_user_provided_id=True if guarded else None,
            barcode_value=barcode_value,
            grouping_identifier=grouping_identifier,
            **extra,
        )

        def parse(envelope: Any) -> PassWriteResult:
            return _pass_from_write(
                "create_pass",
                envelope,
                pass_id=None,
                user_provided_id=user_provided_id,
                template_id=template_id,
                fields=extra,
            )

        params = {"async": "true" if self._settings.create_async else "false"}
        spec = _Spec(
            "create_pass",
            "POST",
            "pass_v3",
            params=params,
            body={"data": request.to_wire()},
            pass_ref=user_provided_id,
            idempotent=guarded,
        )
        return self._call(spec, parse)

    def update_pass(
        self, pass_id: str, fields: dict[str, Any], *, replace: bool = False
    ) -> PassWriteResult:
        """PATCH merges (fields not sent are kept); replace=True POSTs the full record.

        NotFoundError when the pass is gone; the returned `fields` are the ones sent.
        """

        def parse(envelope: Any) -> PassWriteResult:
            return _pass_from_write("update_pass", envelope, pass_id=pass_id, fields=fields)

        method = "POST" if replace else "PATCH"
        spec = _Spec(
            "update_pass",
            method,
            "pass_v3_item",
            path_id=pass_id,
            body={"data": fields},
            pass_ref=pass_id,
        )
        return self._call(spec, parse)

    def get_pass(
        self,
        identifier: str,
        *,
        include_field_mapping: bool = False,
        template_id: str | None = None,  # unused: a userProvidedId is looked up account-wide
    ) -> PassDetails:
        """v1 details by pass uid, userProvidedId or barcode value; NotFoundError if unknown."""
        params = {"includeFieldMapping": "true"} if include_field_mapping else None
        spec = _Spec(
            "get_pass",
            "GET",
            "pass_v1_item",
            path_id=identifier,
            params=params,
            pass_ref=identifier,
        )
        return self._call(spec, parse_v1_pass)

    def delete_pass(self, pass_id: str, *, missing_ok: bool = False) -> None:
        """v3 delete; NotFoundError when already gone (unless missing_ok)."""
        spec = _Spec(
            "delete_pass",
            "DELETE",
            "pass_v3_item",
            path_id=pass_id,
            pass_ref=pass_id,
            gone_after_retry_is_success=True,
        )
        try:
            self._call(spec, _ignore)
        except NotFoundError:
            if not missing_ok:
                raise

    def pass_exists(
        self, identifier: str, *, by: IdentifierKind = "user_provided_id"
    ) -> PassExistence:
        """Whether a pass has this userProvidedId, pass id or barcode; re-checked locally.

        The lookup accepts any of the three kinds of identifier, so the answer is checked
        against the kind asked for: a userProvidedId that happens to equal another pass's
        barcode does not count.
        """
        if by == "user_provided_id" and self._settings.exists_via == "v3_query":
            return self._exists_by_query(identifier)
        try:
            found = self._call(
                _Spec(
                    "pass_exists", "GET", "pass_v1_item", path_id=identifier, pass_ref=identifier
                ),
                parse_v1_pass,
            )
        except NotFoundError:
            return PassExistence(exists=False, identifier=identifier, by=by)
        own = {
            "user_provided_id": found.user_provided_id,
            "pass_id": found.pass_id,
            "barcode": found.barcode_value,
        }[by]
        if own != identifier and not (by == "barcode" and own is None):
            return PassExistence(exists=False, identifier=identifier, by=by)
        return _existence(identifier, by, found.pass_id, found.user_provided_id, found.voided)

    def _exists_by_query(self, identifier: str) -> PassExistence:
        query = PassQuery().where("userProvidedId", Operator.EQUALS, identifier)
        rows = list(islice(self.iter_passes(query, page_size=10, action="pass_exists"), 1))
        if not rows:
            return PassExistence(exists=False, identifier=identifier, by="user_provided_id")
        row = rows[0]
        return _existence(
            identifier, "user_provided_id", row.pass_id, row.user_provided_id, row.voided
        )

    def list_passes(
        self,
        *,
        template_id: str | None = None,
        page_size: int | None = None,
        limit: int | None = None,
    ) -> list[PassRow]:
        """Every pass (of a template), newest first, following `page.next`; up to `limit`."""
        query = PassQuery(template_id=template_id)
        return self._collect(query, page_size, limit, "list_passes")

    def search_passes(
        self,
        phrase: str,
        *,
        template_id: str | None = None,
        page_size: int | None = None,
        limit: int | None = None,
    ) -> list[PassRow]:
        """Passes whose data contains `phrase` (the Query Language's searchPhrase)."""
        if not phrase.strip():
            raise RejectedError("search_passes: the search phrase is empty")
        query = PassQuery(template_id=template_id, search_phrase=phrase)
        return self._collect(query, page_size, limit, "search_passes")

    def query_passes(
        self, query: PassQuery, *, page_size: int | None = None, limit: int | None = None
    ) -> list[PassRow]:
        """Passes matching a Query Language query (groups OR, conditions AND)."""
        return self._collect(query, page_size, limit, "query_passes")

    def _collect(
        self, query: PassQuery, page_size: int | None, limit: int | None, action: str
    ) -> list[PassRow]:
        return list(islice(self.iter_passes(query, page_size=page_size, action=action), limit))

    def iter_passes(
        self,
        query: PassQuery | None = None,
        *,
        page_size: int | None = None,
        action: str = "query_passes",
    ) -> Iterator[PassRow]:
        """Rows page by page (a page is fetched only when needed), re-checked on our side.

        `page.next` is followed only to the configured host or `page_next_hosts`: the link
        carries our API key with it.
        """
        query = query or PassQuery()
        params = {
            "pageSize": str(page_size or self._settings.page_size),
            "formatKeyAdditionalProperties": "name",
        }
        if query.to_dict():
            params["query"] = query.encode()
        url: str | None = None
        seen: set[str] = set()
        for _ in range(self._settings.max_pages):
            spec = _Spec(action, "GET", "pass_v3", params=None if url else params, url=url)
            page = self._call(spec, parse_pass_page)
            yield from (row for row in page.rows if _matches(query, row))
            if not page.next_url:
                return
            if page.next_url in seen:
                raise RejectedError(f"{action}: page.next repeats a page already read")
            seen.add(page.next_url)
            url = self._checked_next(action, page.next_url)
        raise RejectedError(f"{action}: more than max_pages={self._settings.max_pages} pages")

    def _checked_next(self, action: str, link: str) -> str:
        try:
            target = httpx.URL(link)
        except httpx.InvalidURL:
            raise RejectedError(f"{action}: page.next is not a URL") from None
        same_origin = (target.scheme, target.host, target.port) == (
            self._base.scheme,
            self._base.host,
            self._base.port,
        )
        allowed = target.scheme == "https" and target.host in self._settings.page_next_hosts
        if not (same_origin or allowed):
            raise RejectedError(
                f"{action}: refusing page.next to {target.scheme}://{target.host} "
                "(not the configured host; see providers.passcreator.page_next_hosts)"
            )
        return link

    def set_voided(self, pass_id: str, voided: bool) -> ProviderPass:
        """`PUT /api/pass/{uid}` with `{"voided": ...}` (answers 204); then the pass as stored."""
        action = "void_pass" if voided else "unvoid_pass"
        spec = _Spec(
            action,
            "PUT",
            "pass_v1_item",
            path_id=pass_id,
            body={"voided": voided},
            pass_ref=pass_id,
        )
        self._call(spec, _ignore)
        return ProviderPass(pass_id=pass_id, voided=voided)

    def send_push(self, pass_id: str, message: str) -> None:
        """A lock-screen message to the pass's devices; not repeated after an unanswered try."""
        spec = _Spec(
            "send_push",
            "POST",
            "send_push",
            path_id=pass_id,
            body={"pushNotificationText": message},
            pass_ref=pass_id,
            idempotent=False,
        )
        self._call(spec, _ignore)

    def record_app_scan(self, scan: AppScan) -> AppScanResult:
        """Record a scan (§7); with set_voided the pass is redeemed. Not idempotent."""
        spec = _Spec(
            "record_app_scan",
            "POST",
            "record_app_scan",
            body=scan.to_wire(),
            pass_ref=scan.pass_id,
            idempotent=False,
        )
        return self._call(spec, _model(AppScanResult, "record_app_scan"))

    # -- templates -------------------------------------------------------------------------

    def list_templates(self) -> list[ProviderTemplate]:
        """The templates the key may see: [{identifier, name}]."""
        return self._call(_Spec("list_templates", "GET", "list_templates"), parse_templates)

    def get_template(self, template_id: str) -> TemplateDetails:
        """The template's description (v2 describe by default; path configurable)."""
        spec = _Spec("get_template", "GET", "get_template", path_id=template_id)
        return self._call(spec, _model(TemplateDetails, "get_template"))

    def template_fields(self, template_id: str) -> list[TemplateField]:
        """What a pass of the template takes: each additional property (by name, with its
        property id) from the documented `GET /api/pass-template/{id}` (§5), plus the v3
        create keys that are not properties (barcodeValue, groupingIdentifier; §3.4)."""
        spec = _Spec("template_fields", "GET", "template_fields", path_id=template_id)
        return self._call(spec, parse_template_fields)

    def create_template(self, template: TemplateCreate) -> TemplateWriteResult:
        """v2 create; not retried after an unanswered attempt (it could make a twin)."""
        spec = _Spec(
            "create_template", "POST", "create_template", body=template.to_wire(), idempotent=False
        )
        return self._call(spec, _model(TemplateWriteResult, "create_template"))

    def update_template(
        self,
        template_id: str,
        changes: dict[str, Any],
        *,
        replace: bool = False,
        publish: bool = False,
    ) -> TemplateWriteResult:
        """PATCH (or POST with replace) the template; publish=True pushes it to saved passes."""
        spec = _Spec(
            "update_template",
            "POST" if replace else "PATCH",
            "update_template",
            path_id=template_id,
            body=changes,
        )
        result = self._call(spec, _model(TemplateWriteResult, "update_template"))
        if publish:
            self._call(
                _Spec("publish_template", "POST", "publish_template", path_id=template_id),
                _ignore,
            )
        return result

    def delete_template(self, template_id: str) -> None:
        """NotFoundError when it does not exist (or was already deleted)."""
        spec = _Spec(
            "delete_template",
            "DELETE",
            "delete_template",
            path_id=template_id,
            gone_after_retry_is_success=True,
        )
        self._call(spec, _ignore)

    def template_statistics(
        self, template_id: str, *, time_frame: TimeFrame = "month", day: str = "today"
    ) -> TemplateStatistics:
        """Registration and creation timelines of one template (§8)."""
        spec = _Spec(
            "template_statistics",
            "GET",
            "template_statistics",
            path_id=template_id,
            params={"timeFrame": time_frame, "day": day},
        )
        return self._call(spec, _model(TemplateStatistics, "template_statistics"))

    # -- webhooks --------------------------------------------------------------------------

    def subscribe_webhook(
        self, subscription: WebhookSubscribe, *, template_id: str | None = None
    ) -> WebhookSubscription:
        """Not idempotent at Passcreator: call list_webhooks first (pitfall 7)."""
        route = "subscribe_webhook" if template_id is None else "subscribe_webhook_template"
        spec = _Spec(
            "subscribe_webhook",
            "POST",
            route,
            path_id=template_id,
            body=subscription.to_wire(),
            idempotent=False,
        )
        return self._call(spec, _model(WebhookSubscription, "subscribe_webhook"))

    def list_webhooks(self) -> list[WebhookSubscription]:
        return self._call(_Spec("list_webhooks", "GET", "list_webhooks"), parse_webhooks)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PasscreatorClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport, retries, error mapping -------------------------------------------------

    def _call(self, spec: _Spec, parse: Callable[[Any], T]) -> T:
        """One logical call: up to max_attempts HTTP attempts, retrying only TransientError.

        `parse` runs inside each attempt, so an unreadable success body is retried and
        recorded as that attempt's outcome.

        A 429 is raised at once instead of being retried here: the pause belongs to the
        limiter that every worker shares, and sleeping inside one client would hold a worker
        slot while the others keep hitting the limit.
        """
        template = self._paths[spec.route]
        path = (
            template
            if spec.path_id is None
            else template.format(id=path_segment(spec.path_id, action=spec.action))
        )
        request = _Request(spec.method, template, spec.url or path, spec.params, spec.body)

        def send() -> httpx.Response:
            return self._http.request(
                request.method, request.path, params=request.params, json=request.body
            )

        call = Call(
            spec.action,
            request.method,
            request.template,
            spec.pass_ref,
            idempotent=spec.idempotent,
            gone_after_retry_is_success=spec.gone_after_retry_is_success,
        )
        return self._caller.call(call, send, lambda r: self._interpret(spec.action, r), parse)

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
        if action == "create_pass" and status in (200, 400) and self._unknown_template(messages):
            return TemplateNotFoundError(
                f"{action}: unknown template: {joined}", status=status, messages=messages
            )
        return RejectedError(
            f"{action}: rejected ({status}): {joined}", status=status, messages=messages
        )

    def _unknown_template(self, messages: list[str]) -> bool:
        return any(self._unknown_template_re.search(message) for message in messages)

    def _is_duplicate(self, messages: list[str]) -> bool:
        return any(self._duplicate.search(message) for message in messages)

    def _retry_after(self, response: httpx.Response) -> float:
        parsed = parse_retry_after(response.headers.get(self._settings.retry_after_header))
        return self._settings.default_retry_after_seconds if parsed is None else parsed


# -- parsing helpers (pure) ----------------------------------------------------------------


def _existence(
    identifier: str,
    by: IdentifierKind,
    pass_id: str | None,
    user_provided_id: str | None,
    voided: bool | None,
) -> PassExistence:
    return PassExistence(
        exists=True,
        identifier=identifier,
        by=by,
        pass_id=pass_id,
        user_provided_id=user_provided_id,
        voided=voided,
    )


def _matches(query: PassQuery, row: PassRow) -> bool:
    """The client-side re-check: pinned userProvidedIds and the template, when the row says."""
    wanted = query.required_user_provided_ids()
    if wanted is not None and row.user_provided_id not in wanted:
        return False
    return not (query.template_id and row.template_id and row.template_id != query.template_id)


def _model(model: type[M], action: str) -> Callable[[Any], M]:
    """A parser reading `model` from a bare or enveloped body; an empty body is {}."""

    def parse(body: Any) -> M:
        data = _unwrap(body)
        try:
            return model.model_validate({} if data is None or data == [] else data)
        except ValidationError as exc:
            where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
            raise _InvalidBodyError(
                f"{action}: the response does not match {model.__name__} ({where})"
            ) from None

    return parse


def envelope_messages(body: Any) -> list[str]:
    """Reasons from an error envelope; `errors` items may be {property, message} or strings."""
    if not isinstance(body, dict):
        return [] if body is None else [snippet(str(body))]
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
            f"{snippet(response.text)!r}",
            status=response.status_code,
        ) from None


def _error_messages(response: httpx.Response) -> list[str]:
    try:
        return envelope_messages(response.json())
    except ValueError:
        text = snippet(response.text)
        return [text] if text else []


def _detail(response: httpx.Response) -> str:
    try:
        messages = envelope_messages(response.json())
    except ValueError:
        text = snippet(response.text)
        return f": {text!r}" if text else ""
    return f": {'; '.join(messages)}" if messages else ""


def _ignore(_body: Any) -> None:
    """For calls whose success body carries nothing we use (204, or an unspecified shape)."""


def _unwrap(body: Any) -> Any:
    """v1 answers are bare; tolerate the v2/v3 envelope around them too."""
    if isinstance(body, dict) and "success" in body and "data" in body:
        return body["data"]
    return body


def parse_pass_page(body: Any) -> PassPage:
    """The v3 list envelope: rows, `responseMetaData.resultsTotal`, `page.next` (may be absent)."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise _InvalidBodyError("list: the response is not a v3 list envelope")
    meta = body.get("responseMetaData")
    total = meta.get("resultsTotal") if isinstance(meta, dict) else None
    page = body.get("page")
    next_url = page.get("next") if isinstance(page, dict) else None
    rows = _model(PassRow, "list")
    return PassPage(
        rows=[rows(item) for item in body["data"] if isinstance(item, dict)],
        total=int(total) if isinstance(total, int | str) and str(total).isdigit() else None,
        next_url=next_url if isinstance(next_url, str) and next_url else None,
    )


def parse_webhooks(body: Any) -> list[WebhookSubscription]:
    """GET /api/hook/list: a bare list or an enveloped one."""
    data = _unwrap(body)
    if not isinstance(data, list):
        raise _InvalidBodyError("list_webhooks: expected a JSON list of subscriptions")
    parse = _model(WebhookSubscription, "list_webhooks")
    return [parse(item) for item in data if isinstance(item, dict)]


def _pass_from_write(
    action: str,
    envelope: Any,
    *,
    pass_id: str | None,
    fields: dict[str, Any],
    user_provided_id: str | None = None,
    template_id: str | None = None,
) -> PassWriteResult:
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, dict):
        data = {}
    identifier = _str_or_none(data.get("identifier")) or pass_id
    if identifier is None:
        # A create that answers 2xx without an id cannot be adopted; retrying is safe
        # because the uniqueness guard turns a second create into AlreadyExistsError.
        raise _InvalidBodyError(f"{action}: the response holds no pass identifier")
    return PassWriteResult(
        pass_id=identifier,
        user_provided_id=user_provided_id,
        template_id=template_id,
        fields=fields,
        download_page=_str_or_none(data.get("downloadPage") or data.get("linkToPassPage")),
        iphone_uri=_str_or_none(data.get("iPhoneUri")),
        android_uri=_str_or_none(data.get("androidUri") or data.get("AndroidUri")),
        barcode_value=_str_or_none(data.get("barcodeValue")),
        serial_number=_str_or_none(data.get("serialNumber")),
        auto_generated_id=_str_or_none(data.get("autoGeneratedId")),
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


# Keys of a v3 create `data` object that a rule may set besides the template's properties
# (§3.4, V); the keys passsync sets itself (templateId, userProvidedId, ...) are not fields.
PASS_FIELD_KEYS = ("barcodeValue", "groupingIdentifier")


def parse_template_fields(body: Any) -> list[TemplateField]:
    """The documented describe answer (§5): a bare object (an envelope is tolerated) whose
    `dynamicFields.additionalProperties` maps property name -> property id. An empty map may
    come as `[]` (a PHP empty array); any other shape is an unreadable answer."""
    data = _unwrap(body)
    dynamic = data.get("dynamicFields") if isinstance(data, dict) else None
    found = dynamic.get("additionalProperties") if isinstance(dynamic, dict) else None
    if found == []:
        found = {}
    if not isinstance(found, dict):
        raise _InvalidBodyError(
            "template_fields: the response has no dynamicFields.additionalProperties object"
        )
    fields = [
        TemplateField(name=str(name), id=str(prop_id) if prop_id not in (None, "") else None)
        for name, prop_id in found.items()
    ]
    return fields + [TemplateField(name=key, type="pass") for key in PASS_FIELD_KEYS]


def parse_v1_pass(body: Any) -> PassDetails:
    """Read a v1 pass object leniently (voided may be a bool or the string "true")."""
    body = _unwrap(body)
    if not isinstance(body, dict) or not _str_or_none(body.get("identifier")):
        raise _InvalidBodyError("get_pass: the response is not a pass object")
    return _model(PassDetails, "get_pass")(body)


def _str_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
