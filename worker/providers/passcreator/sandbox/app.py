"""A local Passcreator-compatible HTTP API (reference §14), plus /_sandbox inspection."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from worker.observability.redact import redact_url
from worker.providers.common.sandbox import configure_from_json
from worker.providers.passcreator.sandbox.callbacks import CallbackSender, pass_payload
from worker.providers.passcreator.sandbox.control import SandboxControl
from worker.providers.passcreator.sandbox.query import (
    QueryError,
    build_filter,
    decode_query,
    search_string,
)
from worker.providers.passcreator.sandbox.store import (
    DuplicateUserProvidedId,
    PassNotFound,
    PassVoided,
    SandboxStore,
    StoredHook,
    StoredPass,
    StoredTemplate,
    UnknownProperties,
    UnknownTemplate,
    property_id_for,
    template_properties,
)
from worker.providers.passcreator.settings import SandboxSettings

DEFAULT_PAGE_SIZE = 100
HTML_FAULT = "<!DOCTYPE html><html><head><title>{title}</title></head><body>{title}</body></html>"


class ApiError(Exception):
    """Answered as Passcreator's error envelope (or, for 503, a proxy's HTML page)."""

    def __init__(
        self,
        status: int,
        description: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.errors = errors or []
        self.headers = headers or {}


def envelope(
    status: int,
    data: Any = None,
    *,
    description: str = "Request succeeded",
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "success": status < 400,
        "description": description,
        "errors": errors or [],
        "data": [] if data is None else data,
        "statusCode": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _error_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status == 503:
        # What a load balancer in front of an API sends: HTML, not the JSON envelope.
        page = HTML_FAULT.format(title="503 Service Temporarily Unavailable")
        return HTMLResponse(page, status_code=503, headers=exc.headers)
    return envelope(exc.status, description=exc.description, errors=exc.errors, headers=exc.headers)


def _format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


async def _json_object(request: Request) -> dict[str, Any]:
    """A JSON object body (v1/v2 style, no `data` wrapper); 400 envelope otherwise."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid data.", [_err("body", "The body must be a JSON object")])
    return body


async def _json_data(request: Request) -> dict[str, Any]:
    """The `data` object of a v3 write body; 400 envelope when absent or malformed."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise ApiError(400, "Invalid data.", [_err("data", "The body is not valid JSON")]) from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid data.", [_err("data", "The property data is required")])
    return data


def _err(prop: str, message: str) -> dict[str, str]:
    return {"property": prop, "message": message}


def _unknown_properties(exc: UnknownProperties) -> ApiError:
    """The v2/v3 failure envelope (§2.1): one `{property, message}` per unknown property."""
    errors = [
        _err(name, f"Unknown property {name}: template {exc.template} has no such property")
        for name in exc.names
    ]
    return ApiError(400, "Invalid data.", errors)


class SandboxApi:
    """The routes; a class so each app instance owns its store and control."""

    def __init__(self, settings: SandboxSettings, clock: Callable[[], float]) -> None:
        self.store = SandboxStore(settings.seeded_templates(), path=settings.store_path)
        self.control = SandboxControl(settings, clock=clock)
        self.callbacks = CallbackSender()
        self._key = settings.api_key.get_secret_value().encode()

    # -- gate: runs before every /api route ---------------------------------------------------

    async def gate(self, request: Request) -> None:
        """Stats, auth, rate limit, latency and pre-handler faults, in that order."""
        route = request.scope.get("route")
        template = getattr(route, "path", request.url.path).rstrip("/")
        self.control.count_call(f"{request.method} {template}")
        supplied = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(supplied, self._key):
            raise ApiError(401, "Unauthorized: missing or invalid API key")
        wait = self.control.take_token()
        if wait is not None:
            send = self.control.config.send_retry_after
            raise ApiError(
                429, "Too many requests", headers={"Retry-After": str(wait)} if send else None
            )
        if self.control.config.latency_ms > 0:
            await asyncio.sleep(self.control.config.latency_ms / 1000)
        if self.control.draw("slow"):
            # Held before the handler runs: a client that gives up meanwhile has changed nothing.
            await asyncio.sleep(self.control.config.slow_ms / 1000)
        fault = self.control.draw_error()
        if fault is not None:
            raise ApiError(int(fault), "Injected fault")

    # -- links and shapes ---------------------------------------------------------------------

    @staticmethod
    def links(request: Request, stored: StoredPass) -> dict[str, str]:
        base = str(request.base_url).rstrip("/")
        uid = stored.identifier
        return {
            "downloadPage": f"{base}/sandbox-pass/{uid}",
            "iPhoneUri": f"{base}/passinstance/pkpass?passInstance%5B__identity%5D={uid}",
            "androidUri": f"{base}/passinstance/android/{uid}",
        }

    def write_data(self, request: Request, stored: StoredPass, *, barcode: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"identifier": stored.identifier, **self.links(request, stored)}
        if barcode:
            data["barcodeValue"] = stored.barcode_value
        return data

    def v1_object(self, request: Request, stored: StoredPass) -> dict[str, Any]:
        """The v1 pass object (§3.6); voided is a real bool here."""
        links = self.links(request, stored)
        return {
            "identifier": stored.identifier,
            "uri": links["iPhoneUri"],
            "generatedId": str(stored.seq),
            "searchString": search_string(stored),
            "voided": stored.voided,
            "redeemed": False,
            "createdOn": _format_ms(stored.created_ms),
            "modifiedOn": _format_ms(stored.modified_ms),
            "expirationDate": None,
            "userProvidedId": stored.user_provided_id,
            "passTemplateGuid": stored.template_id,
            "passTemplateName": self.store.template_name(stored.template_id),
            "linkToPassPage": links["downloadPage"],
            "thumbnail": None,
            "qrCodeImage": None,
            "barcodeValue": stored.barcode_value,
            "iPhoneUri": links["iPhoneUri"],
            "androidUri": links["androidUri"],
            "additionalProperties": dict(stored.fields),
        }

    def list_row(self, request: Request, stored: StoredPass) -> dict[str, Any]:
        """A v3 list row, additional properties keyed by name (formatKeyAdditionalProperties)."""
        return {
            **stored.fields,
            "identifier": stored.identifier,
            "createdOn": _format_ms(stored.created_ms),
            "modifiedOn": _format_ms(stored.modified_ms),
            "userProvidedId": stored.user_provided_id,
            "passTemplateGuid": stored.template_id,
            "barcodeValue": stored.barcode_value,
            "voided": stored.voided,
            "noOfRegistrations": 0,
            "numberOfActive": 0,
            **self.links(request, stored),
        }

    async def committed(self, response: Response, *, created: bool = False) -> Response:
        """Count an applied write; maybe answer 500 anyway ("commit then fail").

        `answer_delay_ms` holds the answer after the write is applied: the window in which a
        killed client has changed the provider but not recorded it.
        """
        self.control.count_write(created=created)
        if self.control.config.answer_delay_ms > 0:
            await asyncio.sleep(self.control.config.answer_delay_ms / 1000)
        if self.control.draw("commit_then_fail"):
            raise ApiError(500, "Internal server error")
        return response

    def not_found(self, identifier: str) -> ApiError:
        return ApiError(404, "Pass not found", [_err("identifier", f"No pass {identifier}")])

    # -- /api routes --------------------------------------------------------------------------

    async def create_pass(self, request: Request) -> Response:
        data = await _json_data(request)
        config = self.control.config
        try:
            stored = self.store.create(data, unknown=config.unknown_properties)
        except UnknownProperties as exc:
            raise _unknown_properties(exc) from None
        except UnknownTemplate:
            status = config.unknown_template_status
            raise ApiError(
                status, "Invalid data.", [_err("templateId", "Unknown template")]
            ) from None
        except DuplicateUserProvidedId as exc:
            message = config.duplicate_message.replace("{user_provided_id}", str(exc))
            raise ApiError(400, "Invalid data.", [_err("userProvidedId", message)]) from None
        is_async = request.query_params.get("async", "true").lower() != "false"
        barcode = not (is_async and config.async_omits_barcode)
        body = envelope(config.create_status, self.write_data(request, stored, barcode=barcode))
        answer = await self.committed(body, created=True)
        await self.notify("pass_created", stored)
        return answer

    async def patch_pass(self, identifier: str, request: Request) -> Response:
        return await self._update(identifier, request, replace=False)

    async def replace_pass(self, identifier: str, request: Request) -> Response:
        return await self._update(identifier, request, replace=True)

    async def _update(self, identifier: str, request: Request, *, replace: bool) -> Response:
        data = await _json_data(request)
        by_upid = self.control.config.v3_accepts_user_provided_id
        write = self.store.replace if replace else self.store.patch
        unknown = self.control.config.unknown_properties
        try:
            stored = write(identifier, data, by_upid=by_upid, unknown=unknown)
        except PassNotFound:
            raise self.not_found(identifier) from None
        except UnknownProperties as exc:
            raise _unknown_properties(exc) from None
        return await self.committed(envelope(200, self.write_data(request, stored, barcode=True)))

    async def delete_pass(self, identifier: str) -> Response:
        by_upid = self.control.config.v3_accepts_user_provided_id
        try:
            self.store.delete(identifier, by_upid=by_upid)
        except PassNotFound:
            raise self.not_found(identifier) from None
        return await self.committed(envelope(200, description="Pass deleted"))

    async def get_pass_v1(self, identifier: str, request: Request) -> Response:
        if self.control.draw("non_json"):
            return HTMLResponse(HTML_FAULT.format(title="Passcreator"), status_code=200)
        try:
            stored = self.store.find_v1(identifier)
        except PassNotFound:
            raise self.not_found(identifier) from None
        return JSONResponse(self.v1_object(request, stored))

    async def void_pass_v1(self, identifier: str, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("voided"), bool):
            raise ApiError(400, "Invalid data.", [_err("voided", "voided must be a boolean")])
        try:
            self.store.set_voided(identifier, body["voided"])
        except PassNotFound:
            raise self.not_found(identifier) from None
        answer = await self.committed(Response(status_code=204))
        if body["voided"]:
            await self.notify("pass_voided", self.store.find_v1(identifier))
        return answer

    async def list_templates(self) -> Response:
        if self.control.draw("non_json"):
            return HTMLResponse(HTML_FAULT.format(title="Passcreator"), status_code=200)
        rows = [{"identifier": tid, "name": name} for tid, name in self.store.templates().items()]
        return JSONResponse(rows)

    async def list_passes(self, request: Request) -> Response:
        """Keyset-paged, newest first; `?userProvidedId=` is ignored like the real API's."""
        params = request.query_params
        config = self.control.config
        keep = self._list_filter(params.get("query"), params.get("userProvidedId"))
        size = min(_int_param(params.get("pageSize"), DEFAULT_PAGE_SIZE), config.max_page_size)
        page = self.store.page(
            size=max(size, 1),
            start_uid=params.get("startUid") or None,
            start_ms=_int_param(params.get("startCreatedOnTimestamp"), None),
            keep=keep,
        )
        rows = [self.list_row(request, p) for p in page.items]
        body: dict[str, Any] = {
            "statusCode": 200,
            "success": True,
            "description": "Success",
            "errors": [],
            "count": len(rows),
            "responseMetaData": {"resultsTotal": page.total, "resultsThisPage": len(rows)},
            "data": rows,
        }
        next_url = self._next_url(request, page.next_start, size) if page.next_start else None
        if next_url is not None or config.last_page_marker == "null":
            body["page"] = {"next": next_url}
        return JSONResponse(body)

    def _list_filter(self, raw_query: str | None, upid: str | None) -> Callable[[StoredPass], bool]:
        try:
            keep = build_filter(decode_query(raw_query)) if raw_query else (lambda _p: True)
        except QueryError as exc:
            raise ApiError(400, "Invalid query.", [_err("query", str(exc))]) from None
        if upid is None or self.control.config.ignore_user_provided_id_param:
            return keep
        return lambda p: keep(p) and p.user_provided_id == upid

    def _next_url(self, request: Request, start: StoredPass, size: int) -> str:
        base = self.control.config.page_next_base_url or str(request.base_url)
        params = {
            "pageSize": str(size),
            "startUid": start.identifier,
            "startCreatedOnTimestamp": str(start.created_ms),
        }
        for carried in ("query", "userProvidedId", "formatKeyAdditionalProperties"):
            if carried in request.query_params:
                params[carried] = request.query_params[carried]
        return f"{base.rstrip('/')}/api/v3/pass/?{urlencode(params)}"

    async def send_push(self, identifier: str, request: Request) -> Response:
        """204 sent; 400 empty text or pass not active; 404 unknown (§3.2)."""
        body = await _json_object(request)
        text = body.get("pushNotificationText")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Invalid data.", [_err("pushNotificationText", "Text is empty")])
        try:
            self.store.push(identifier, text)
        except PassNotFound:
            raise self.not_found(identifier) from None
        except PassVoided:
            raise ApiError(400, "The pass is not active.") from None
        return await self.committed(Response(status_code=204))

    async def record_app_scan(self, request: Request) -> Response:
        """Records a scan and answers {"appScanId"}; setVoided voids the pass (§7)."""
        body = await _json_object(request)
        if not _opt_text(body.get("appConfigurationId")):
            raise ApiError(400, "Invalid data.", [_err("appConfigurationId", "required")])
        try:
            scan = self.store.record_scan(body)
        except PassNotFound:
            raise self.not_found(
                str(body.get("passId") or body.get("scannedBarcodeValue"))
            ) from None
        answer = await self.committed(JSONResponse({"appScanId": scan.identifier}))
        hooks = self.store.hooks()
        await self.callbacks.send(hooks, "pass_scanned", {**body, "appScanId": scan.identifier})
        return answer

    async def notify(self, event: str, stored: StoredPass, **extra: Any) -> int:
        """Call back the hooks subscribed to `event` about one pass."""
        name = self.store.templates().get(stored.template_id)
        payload = {**pass_payload(stored, name), **extra}
        return await self.callbacks.send(self.store.hooks(), event, payload)

    # -- templates ----------------------------------------------------------------------------

    def template_or_404(self, template_id: str) -> StoredTemplate:
        try:
            return self.store.template(template_id)
        except UnknownTemplate:
            raise ApiError(
                404, "Template not found", [_err("identifier", f"No template {template_id}")]
            ) from None

    def describe(self, template: StoredTemplate) -> dict[str, Any]:
        """The deprecated v1 describe shape (§5); the v2 shape is unconfirmed, so the same."""
        properties = template_properties(template)
        return {
            **template.data,
            "identifier": template.identifier,
            "name": template.name,
            "numberOfCreatedPasses": self.store.count_passes(template.identifier),
            "createPassUrl": f"/api/v3/pass?templateId={template.identifier}",
            "unpublishedChanges": template.unpublished_changes,
            "dynamicFields": {
                "passFrontFields": [],
                "passBackFields": [],
                "additionalProperties": {
                    n: property_id_for(template.identifier, n) for n in properties
                },
            },
        }

    async def get_template(self, identifier: str) -> Response:
        return envelope(200, self.describe(self.template_or_404(identifier)))

    async def get_template_v1(self, identifier: str) -> Response:
        return JSONResponse(self.describe(self.template_or_404(identifier)))

    async def create_template(self, request: Request) -> Response:
        body = await _json_object(request)
        if not _opt_text(body.get("name")):
            raise ApiError(400, "Invalid data.", [_err("name", "The property name is required")])
        kind = body.get("type", "generic")
        if kind not in TEMPLATE_TYPES:
            raise ApiError(400, "Invalid data.", [_err("type", f"Unknown type {kind}")])
        template = self.store.create_template({**body, "type": kind})
        data = {"identifier": template.identifier, "name": template.name}
        return await self.committed(envelope(200, data))

    async def patch_template(self, identifier: str, request: Request) -> Response:
        return await self._update_template(identifier, request, replace=False)

    async def replace_template(self, identifier: str, request: Request) -> Response:
        return await self._update_template(identifier, request, replace=True)

    async def _update_template(
        self, identifier: str, request: Request, *, replace: bool
    ) -> Response:
        body = await _json_object(request)
        self.template_or_404(identifier)
        if replace and not _opt_text(body.get("name")):
            raise ApiError(400, "Invalid data.", [_err("name", "The property name is required")])
        template = self.store.update_template(identifier, body, replace=replace)
        data = {"identifier": template.identifier, "name": template.name}
        return await self.committed(envelope(200, data))

    async def publish_template(self, identifier: str) -> Response:
        self.template_or_404(identifier)
        template = self.store.publish_template(identifier)
        return await self.committed(envelope(200, {"identifier": template.identifier}))

    async def delete_template(self, identifier: str) -> Response:
        self.template_or_404(identifier)
        self.store.delete_template(identifier)
        return await self.committed(envelope(200, description="Template deleted"))

    async def template_statistics(self, identifier: str, request: Request) -> Response:
        """Counts as strings, like the documented example (§8)."""
        self.template_or_404(identifier)
        per_day: dict[str, int] = {}
        for stored in self.store.all():
            if stored.template_id == identifier and not stored.deleted:
                day = _format_ms(stored.created_ms)[:10]
                per_day[day] = per_day.get(day, 0) + 1
        created = [{"date": d, "noOfPasses": str(n)} for d, n in sorted(per_day.items())]
        return JSONResponse(
            {
                "activeRegistrationsTimeline": [],
                "inactiveRegistrationsTimeline": [],
                "createdPassesTimeline": created,
                "updatedPassesTimeline": [],
                "passesPerOperatingSystem": {"iOS": "0", "Android": "0", "WindowsPhone": "0"},
            }
        )

    # -- webhooks -----------------------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        return await self._subscribe(request, None)

    async def subscribe_template(self, identifier: str, request: Request) -> Response:
        return await self._subscribe(request, identifier)

    async def _subscribe(self, request: Request, template_id: str | None) -> Response:
        """201 and a new hook on every call, like the real, non-idempotent endpoint (§6)."""
        body = await _json_object(request)
        if not _opt_text(body.get("event")):
            raise ApiError(400, "Invalid data.", [_err("event", "The property event is required")])
        if body.get("pullMode") is not True and not _opt_text(body.get("target_url")):
            raise ApiError(400, "Invalid data.", [_err("target_url", "required")])
        if template_id is not None:
            self.template_or_404(template_id)
        hook = self.store.subscribe(body, template_id)
        answer = _hook_row(hook)
        if request.query_params.get("generateAccessToken", "").lower() == "true":
            answer["accessToken"] = f"sbx-{hook.identifier}"
        return await self.committed(JSONResponse(answer, status_code=201))

    async def list_hooks(self) -> Response:
        return JSONResponse([_hook_row(h) for h in self.store.hooks()])

    # -- /_sandbox inspection and control -----------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        return self.control.stats()

    async def passes(self) -> dict[str, Any]:
        rows = [
            {
                "identifier": p.identifier,
                "userProvidedId": p.user_provided_id,
                "templateId": p.template_id,
                "barcodeValue": p.barcode_value,
                "fields": p.fields,
                "voided": p.voided,
                "deleted": p.deleted,
            }
            for p in self.store.all()
        ]
        return {"count": len(rows), "passes": rows}

    async def templates_state(self) -> dict[str, Any]:
        rows = [
            {
                "identifier": t.identifier,
                "name": t.name,
                "data": t.data,
                "unpublishedChanges": t.unpublished_changes,
                "deleted": t.deleted,
            }
            for t in self.store.all_templates()
        ]
        return {"count": len(rows), "templates": rows}

    async def hooks_state(self) -> dict[str, Any]:
        # Shown to anyone who can reach the sandbox: a callback URL's query holds its token.
        rows = [_shown(_hook_row(h)) for h in self.store.hooks()]
        return {"count": len(rows), "hooks": rows}

    async def scans_state(self) -> dict[str, Any]:
        rows = [
            {"appScanId": s.identifier, "passId": s.pass_id, **s.body} for s in self.store.scans()
        ]
        return {"count": len(rows), "scans": rows}

    async def pushes_state(self) -> dict[str, Any]:
        rows = [{"passId": p.pass_id, "text": p.text} for p in self.store.pushes()]
        return {"count": len(rows), "pushes": rows}

    async def get_config(self) -> dict[str, Any]:
        return self.control.config.model_dump()

    async def set_config(self, request: Request) -> Response:
        status, answer = configure_from_json(self.control, await request.body())
        return JSONResponse(answer, status_code=status)

    async def device(self, identifier: str, action: str, request: Request) -> Response:
        """A test's stand-in for a phone: install (save) or remove the pass on a device."""
        body = await _json_object(request) if await request.body() else {}
        try:
            stored = self.store.find_v1(identifier)
        except PassNotFound:
            return JSONResponse({"detail": f"no live pass {identifier}"}, status_code=404)
        event = {
            "install": "pushnotification_registered",
            "remove": "pushnotification_unregistered",
        }
        platform = str(body.get("platform") or "iOS")
        sent = await self.notify(event[action], stored, platform=platform)
        return JSONResponse({"identifier": stored.identifier, "event": event[action], "sent": sent})

    async def install(self, identifier: str, request: Request) -> Response:
        return await self.device(identifier, "install", request)

    async def remove(self, identifier: str, request: Request) -> Response:
        return await self.device(identifier, "remove", request)

    async def callbacks_state(self) -> dict[str, Any]:
        return {"count": len(self.callbacks.sent), "callbacks": list(self.callbacks.sent)}

    async def reset(self) -> dict[str, Any]:
        self.callbacks.reset()
        self.store.reset()
        self.control.reset()
        return {"reset": True}

    async def delete_externally(self, identifier: str) -> Response:
        try:
            stored = self.store.delete_externally(identifier)
        except PassNotFound:
            return JSONResponse({"detail": f"no live pass {identifier}"}, status_code=404)
        return JSONResponse({"identifier": stored.identifier, "deleted": True})


TEMPLATE_TYPES = frozenset(
    {"coupon", "storeCard", "eventTicketBackground", "eventTicket", "generic", "boardingPass"}
)


def _opt_text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A hook row without the secrets of its URLs (query strings, passwords)."""
    for key in ("target_url", "subscription_url"):
        if isinstance(row.get(key), str):
            row[key] = redact_url(row[key])
    return row


def _hook_row(hook: StoredHook) -> dict[str, Any]:
    return {
        "id": hook.identifier,
        "event": hook.event,
        "target_url": hook.target_url,
        "templateIdentifier": hook.template_id,
        "subscription_url": hook.body.get("subscription_url"),
        "retryEnabled": bool(hook.body.get("retryEnabled", False)),
        "signPayload": bool(hook.body.get("signPayload", False)),
        "pullMode": bool(hook.body.get("pullMode", False)),
        "createdOn": _format_ms(hook.created_ms),
    }


def _int_param(value: str | None, default: int | None) -> Any:
    try:
        return default if value is None else int(value)
    except ValueError:
        return default


def _api_router(api: SandboxApi) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(api.gate)])
    router.add_api_route("/v3/pass", api.create_pass, methods=["POST"])
    router.add_api_route("/v3/pass", api.list_passes, methods=["GET"])
    # page.next from the real API carries a trailing slash; answer it rather than redirect.
    router.add_api_route("/v3/pass/", api.list_passes, methods=["GET"], include_in_schema=False)
    router.add_api_route("/v3/pass/{identifier}", api.patch_pass, methods=["PATCH"])
    router.add_api_route("/v3/pass/{identifier}", api.replace_pass, methods=["POST"])
    router.add_api_route("/v3/pass/{identifier}", api.delete_pass, methods=["DELETE"])
    router.add_api_route("/pass-template", api.list_templates, methods=["GET"])
    router.add_api_route("/pass/{identifier}", api.get_pass_v1, methods=["GET"])
    router.add_api_route("/pass/{identifier}", api.void_pass_v1, methods=["PUT"])
    router.add_api_route("/pass/{identifier}/sendpushnotification", api.send_push, methods=["POST"])
    router.add_api_route("/pass/statistics/{identifier}", api.template_statistics, methods=["GET"])
    router.add_api_route("/appscan", api.record_app_scan, methods=["POST"])
    router.add_api_route("/pass-template/{identifier}", api.get_template_v1, methods=["GET"])
    router.add_api_route("/pass-template/{identifier}", api.delete_template, methods=["DELETE"])
    router.add_api_route("/v2/pass-template", api.create_template, methods=["POST"])
    router.add_api_route("/v2/pass-template/{identifier}", api.patch_template, methods=["PATCH"])
    router.add_api_route("/v2/pass-template/{identifier}", api.replace_template, methods=["POST"])
    router.add_api_route(
        "/v2/pass-template/{identifier}/describe", api.get_template, methods=["GET"]
    )
    router.add_api_route(
        "/v2/pass-template/{identifier}/publish", api.publish_template, methods=["POST"]
    )
    router.add_api_route("/hook/subscribe", api.subscribe, methods=["POST"])
    router.add_api_route("/hook/subscribe/{identifier}", api.subscribe_template, methods=["POST"])
    router.add_api_route("/hook/list", api.list_hooks, methods=["GET"])
    return router


def _control_router(api: SandboxApi) -> APIRouter:
    router = APIRouter(prefix="/_sandbox")
    router.add_api_route("/stats", api.stats, methods=["GET"])
    router.add_api_route("/passes", api.passes, methods=["GET"])
    router.add_api_route("/templates", api.templates_state, methods=["GET"])
    router.add_api_route("/hooks", api.hooks_state, methods=["GET"])
    router.add_api_route("/scans", api.scans_state, methods=["GET"])
    router.add_api_route("/pushes", api.pushes_state, methods=["GET"])
    router.add_api_route("/config", api.get_config, methods=["GET"])
    router.add_api_route("/config", api.set_config, methods=["POST"])
    router.add_api_route("/reset", api.reset, methods=["POST"])
    router.add_api_route("/passes/{identifier}/install", api.install, methods=["POST"])
    router.add_api_route("/passes/{identifier}/remove", api.remove, methods=["POST"])
    router.add_api_route("/callbacks", api.callbacks_state, methods=["GET"])
    router.add_api_route(
        "/passes/{identifier}/delete-externally", api.delete_externally, methods=["POST"]
    )
    return router


def create_sandbox_app(
    settings: SandboxSettings, *, clock: Callable[[], float] = time.monotonic
) -> FastAPI:
    """Build a fresh sandbox; `clock` (seconds) drives the token bucket, for tests."""
    api = SandboxApi(settings, clock)
    app = FastAPI(
        title="passsync Passcreator sandbox",
        docs_url="/_sandbox/docs",
        redoc_url=None,
        openapi_url="/_sandbox/openapi.json",
    )
    app.state.sandbox = api
    app.add_exception_handler(ApiError, _error_response)
    app.include_router(_api_router(api))
    app.include_router(_control_router(api))
    return app
