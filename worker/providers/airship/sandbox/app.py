"""A local Airship Wallet-compatible HTTP API (/v1 paths, /token), plus /_sandbox inspection.

What it imitates (docs/airship.md): `Api-Revision: 1.2` required; Basic auth with the
project's key and secret, or an OAuth2 bearer from POST /token (client credentials, scopes,
tokens that expire: 401 afterwards); passes from a template with external ids unique per
template (400 on a duplicate, the documented 404 body on an unknown one); partial updates
returning {ticketId}; void and unvoid by the expirationDate label; paged lists
{count, passes, pagination}; adaptive links; one callback target per project, called with
{passId, templateId, serialNumber, createdAt, updatedAt, externalId, platform} and the
registered static headers (unsigned, as Airship's are).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from worker.providers.airship.models import flat_fields
from worker.providers.airship.sandbox.control import SandboxControl
from worker.providers.airship.sandbox.store import SandboxStore, StoredPass, StoreError
from worker.providers.airship.settings import AirshipSandboxSettings
from worker.providers.common.sandbox import configure_from_json

# Which OAuth scope each route family needs (V: Wallet API Authorization Reference).
SCOPE_OF_PREFIX = (
    ("/v1/pass/id/{externalId}/stats", "wrpt"),
    ("/v1/links", "wadl"),
    ("/v1/template", "wtmp"),
    ("/v1/pass", "wpas"),
)

KNOWN_SCOPES = frozenset(
    {"wadl", "wevt", "wfli", "wnot", "wpas", "wprj", "wsch", "wseg", "wrpt", "wtmp"}
)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        description: str,
        details: str = "",
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.details = details
        self.headers = headers


def _error_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    body = {"code": exc.status, "description": exc.description, "details": exc.details}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise ApiError(499, "client closed request") from None
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        # V: 406 for a POST without valid JSON.
        raise ApiError(406, "Not Acceptable", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(406, "Not Acceptable", "the body must be a JSON object")
    return body


class SandboxApi:
    def __init__(self, settings: AirshipSandboxSettings, clock: Callable[[], float]) -> None:
        self.store = SandboxStore(settings.templates, settings.project_id, settings.store_path)
        self.control = SandboxControl(settings)
        self._clock = clock
        self._basic = (
            settings.project_key.get_secret_value(),
            settings.project_secret.get_secret_value(),
        )
        self._client = (
            settings.client_id.get_secret_value(),
            settings.client_secret.get_secret_value(),
        )
        self.sent_callbacks: list[dict[str, Any]] = []
        self.stale_after_refresh = 0

    # -- gate ----------------------------------------------------------------------------------

    async def gate(self, request: Request) -> None:
        """Stats, Api-Revision, auth, rate limit, latency and pre-handler faults."""
        route = request.scope.get("route")
        template = getattr(route, "path", request.url.path)
        self.control.count_call(f"{request.method} {template}")
        config = self.control.config
        if config.require_api_revision and request.headers.get("api-revision") != "1.2":
            raise ApiError(400, "Bad Request", "Api-Revision header 1.2 is required")
        self.authenticate(request.headers.get("authorization", ""), template, request.method)
        wait = self.control.take_token()
        if wait is not None:
            headers = {"Retry-After": str(wait)} if config.send_retry_after else None
            raise ApiError(429, "Too Many Requests", headers=headers)
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        if self.control.draw("slow"):
            await asyncio.sleep(config.slow_ms / 1000)
        fault = self.control.draw_error()
        if fault is not None:
            raise ApiError(int(fault), "Internal Server Error", "injected fault")

    def authenticate(self, value: str, template: str, method: str) -> None:
        if value.startswith("Basic "):
            try:
                decoded = base64.b64decode(value.removeprefix("Basic "), validate=True).decode()
            except ValueError:
                # V (EU article): a malformed auth string surfaces as a 500.
                self._refuse("malformed", 500, "Error reading the api key")
            key, _, secret = decoded.partition(":")
            if _same(key, self._basic[0]) and _same(secret, self._basic[1]):
                return
            self._refuse("basic", 401, "Unauthorized")
        if value.startswith("Bearer "):
            self._bearer(value.removeprefix("Bearer "), template, method)
            return
        self._refuse("missing", 401, "Unauthorized")

    def _bearer(self, value: str, template: str, method: str) -> None:
        token = self.store.tokens.get(value)
        if token is None:
            self._refuse("bearer", 401, "Unauthorized")
        now = self._clock()
        if token.revoked or now >= token.expires_at:
            newer = any(
                t.client_id == token.client_id and t.issued_at > token.issued_at
                for t in list(self.store.tokens.values())
            )
            if newer:
                self.stale_after_refresh += 1
            self._refuse("expired", 401, "Unauthorized", "token expired")
        if template.startswith("/v1/project"):
            # V: the callback settings accept Basic auth only.
            self._refuse("scheme", 403, "Forbidden", "this endpoint needs Basic auth")
        needed = next((s for prefix, s in SCOPE_OF_PREFIX if template.startswith(prefix)), None)
        if needed is not None and needed not in token.scopes:
            self._refuse("scope", 403, "Forbidden", f"the token lacks scope {needed}")

    def _refuse(self, reason: str, status: int, description: str, details: str = "") -> NoReturn:
        self.control.count_refused(reason)
        raise ApiError(status, description, details)

    # -- OAuth2 --------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        """POST /token: client credentials (Basic, URL-encoded id and secret), form body."""
        self.control.count_call("POST /token")
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        value = request.headers.get("authorization", "")
        try:
            decoded = base64.b64decode(value.removeprefix("Basic "), validate=True).decode()
        except ValueError:
            decoded = ""
        client_id, _, secret = decoded.partition(":")
        if not (
            value.startswith("Basic ")
            and _same(unquote(client_id), self._client[0])
            and _same(unquote(secret), self._client[1])
        ):
            self.control.count_refused("client")
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = parse_qs((await request.body()).decode())
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        scopes = tuple(s for item in form.get("scope", []) for s in item.split())
        unknown = set(scopes) - {
            "wadl",
            "wevt",
            "wfli",
            "wnot",
            "wpas",
            "wprj",
            "wsch",
            "wseg",
            "wrpt",
            "wtmp",
        }
        if unknown:
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        lifetime = self.control.config.token_lifetime_seconds
        token = self.store.issue(client_id, scopes, self._clock(), lifetime)
        return JSONResponse(
            {
                "access_token": token.value,
                "token_type": "Bearer",
                "expires_in": int(lifetime) if lifetime >= 1 else lifetime,
                "scope": " ".join(scopes),
            }
        )

    # -- helpers -------------------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def committed(self, response: Response, *, created: bool = False) -> Response:
        self.store.save()
        self.control.count_write(created=created)
        if self.control.config.answer_delay_ms > 0:
            await asyncio.sleep(self.control.config.answer_delay_ms / 1000)
        if self.control.draw("commit_then_fail"):
            raise ApiError(500, "Internal Server Error", "internal error")
        return response

    def call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except StoreError as exc:
            raise ApiError(exc.status, exc.description, exc.details) from None

    # -- passes --------------------------------------------------------------------------------

    async def create(self, template_id: str, request: Request) -> Response:
        body = await _json_object(request)
        external = body.get("externalId")
        external = str(external) if isinstance(external, str | int) and external != "" else None
        stored = self.call(lambda: self.store.create(template_id, external, body))
        view = stored.view(self.base_url(request))
        answer = {k: view[k] for k in ("id", "createdAt", "publicUrl", "status", "url")}
        return await self.committed(JSONResponse(answer), created=True)

    async def create_external(
        self, template_id: str, external_id: str, request: Request
    ) -> Response:
        body = await _json_object(request)
        stored = self.call(lambda: self.store.create(template_id, external_id, body))
        view = stored.view(self.base_url(request))
        answer = {k: view[k] for k in ("id", "createdAt", "publicUrl", "status", "url")}
        return await self.committed(JSONResponse(answer), created=True)

    async def get(self, pass_id: str, request: Request) -> Response:
        stored = self.call(lambda: self.store.find(pass_id))
        return JSONResponse(stored.view(self.base_url(request)))

    async def get_external(self, external_id: str, request: Request) -> Response:
        stored = self.call(lambda: self.store.find_external(external_id))
        return JSONResponse(stored.view(self.base_url(request)))

    async def update(self, pass_id: str, request: Request) -> Response:
        body = await _json_object(request)
        stored = self.call(lambda: self.store.find(pass_id))
        return await self._update(stored, body)

    async def update_external(
        self, template_id: str, external_id: str, request: Request
    ) -> Response:
        body = await _json_object(request)
        self.call(lambda: self.store.template(template_id))
        stored = self.call(lambda: self.store.find_external(external_id, template_id))
        return await self._update(stored, body)

    async def _update(self, stored: StoredPass, body: dict[str, Any]) -> Response:
        ticket = self.call(lambda: self.store.update(stored, body))
        return await self.committed(JSONResponse({"ticketId": ticket}))

    async def delete(self, pass_id: str) -> Response:
        stored = self.call(lambda: self.store.find(pass_id))
        self.store.delete(stored)
        return await self.committed(JSONResponse({"status": "deleted", "passId": stored.id}))

    async def list_passes(self, request: Request) -> Response:
        query = request.query_params
        template_id = query.get("templateId")
        if not template_id:
            raise ApiError(400, "Bad Request", "templateId is required")
        rows = self.call(lambda: self.store.of_template(template_id))
        status = query.get("status")
        if status:
            rows = [p for p in rows if _status_matches(p, status)]
        return self._page(request, [p.view(self.base_url(request)) for p in rows], "passes")

    async def stats(self, external_id: str) -> Response:
        stored = self.call(lambda: self.store.find_external(external_id))
        installed = int(stored.status == "installed")
        body = {
            "total": 1,
            "installed": installed,
            "uninstalled": int(stored.status == "uninstalled"),
            "templates": [
                {"id": stored.template_id, "installed": installed, "uninstalled": stored.uninstalls}
            ],
        }
        return JSONResponse(body)

    def _page(self, request: Request, rows: list[dict[str, Any]], key: str) -> Response:
        query = request.query_params
        size = _int(query.get("pageSize"), self.control.config.default_page_size)
        page = max(_int(query.get("page"), 1), 1)
        start = (page - 1) * size
        body = {
            "count": len(rows),
            key: rows[start : start + size],
            "pagination": {
                "order": "id",
                "page": page,
                "start": start,
                "direction": "DESC",
                "pageSize": size,
            },
        }
        return JSONResponse(body)

    # -- templates, links, callbacks -------------------------------------------------------------

    async def template_headers(self, request: Request) -> Response:
        return self._page(request, self.store.headers(), "templateHeaders")

    async def adaptive_link(self, request: Request) -> Response:
        body = await _json_object(request)
        for key in ("iosTemplateId", "androidTemplateId"):
            if key in body:
                template = str(body[key])
                self.call(lambda: self.store.template(template))  # noqa: B023 - called at once
        link_id = f"al{len(self.store.links) + 1}"
        url = f"{self.base_url(request)}/_sandbox/links/{link_id}"
        self.store.links.append({"adaptiveLinkId": link_id, "url": url, "request": body})
        return await self.committed(JSONResponse({"adaptiveLinkId": link_id, "url": url}))

    async def callback_settings(self, project_id: str, request: Request) -> Response:
        body = await _json_object(request)
        if project_id != str(self.store.project_id):
            raise ApiError(404, "The resource is no longer at that location.", "project")
        base = body.get("baseUrl")
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request", "baseUrl is required")
        if self.control.config.callbacks_https_only and not base.startswith("https://"):
            raise ApiError(400, "Bad Request", "baseUrl must use HTTPS")
        headers = body.get("headers") if isinstance(body.get("headers"), dict) else {}
        self.store.callback = {"baseUrl": base.rstrip("/"), "headers": dict(headers or {})}
        return await self.committed(JSONResponse(self.store.callback))

    # -- /_sandbox -----------------------------------------------------------------------------

    async def device(self, pass_id: str, action: str, request: Request) -> Response:
        """A phone saves (install) or removes the pass: Airship calls the project back."""
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        try:
            stored = self.store.find(pass_id)
        except StoreError:
            return JSONResponse({"detail": f"no live pass {pass_id}"}, status_code=404)
        platform = str(body.get("platform") or "ios").lower() if isinstance(body, dict) else "ios"
        if action == "install":
            stored.status, stored.installs = "installed", stored.installs + 1
        else:
            stored.status, stored.uninstalls = "uninstalled", stored.uninstalls + 1
        self.store.save()
        sent = await self._call_back(
            stored, "install" if action == "install" else "uninstall", platform
        )
        return JSONResponse({"id": stored.id, "action": action, "sent": sent})

    async def _call_back(self, stored: StoredPass, event: str, platform: str) -> int:
        target = self.store.callback
        if target is None:
            return 0
        url = f"{target['baseUrl']}{self.control.config.callback_path_prefix}/pass/{event}"
        payload = {
            "passId": stored.id,
            "templateId": stored.template_id,
            "serialNumber": stored.serial,
            "createdAt": stored.created_at,
            "updatedAt": stored.updated_at,
            "externalId": stored.external_id,
            "platform": platform,
        }
        headers = {**target["headers"], "Content-Type": "application/json"}
        record: dict[str, Any] = {"url": url, "payload": payload}
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(url, content=json.dumps(payload), headers=headers)
            record["status"] = answer.status_code
        except httpx.HTTPError as exc:
            record["status"] = None
            record["error"] = type(exc).__name__
        self.sent_callbacks.append(record)
        return 1 if record.get("status") and record["status"] < 300 else 0

    async def install(self, pass_id: str, request: Request) -> Response:
        return await self.device(pass_id, "install", request)

    async def remove(self, pass_id: str, request: Request) -> Response:
        return await self.device(pass_id, "remove", request)

    async def stats_state(self) -> dict[str, Any]:
        stats = self.control.stats()
        stats["token_requests"] = self.store.token_requests
        stats["stale_token_after_refresh"] = self.stale_after_refresh
        return stats

    async def passes_state(self, request: Request) -> dict[str, Any]:
        base = self.base_url(request)
        rows = [
            {**p.view(base), "deleted": p.deleted, "changeMessages": list(p.change_messages)}
            for _, p in sorted(self.store.passes.items())
        ]
        return {"count": len(rows), "passes": rows}

    async def neutral_state(self) -> dict[str, Any]:
        rows = []
        for _, stored in sorted(self.store.passes.items()):
            label = stored.headers.get("expirationDate", {}).get("label")
            rows.append(
                {
                    "pass_id": str(stored.id),
                    "external_id": stored.external_id,
                    "template": self.store.templates.get(stored.template_id),
                    "fields": flat_fields(stored.fields),
                    "voided": isinstance(label, str) and label.lower() == "voided",
                    "deleted": stored.deleted,
                }
            )
        return {"count": len(rows), "passes": rows}

    async def links_state(self) -> dict[str, Any]:
        return {"count": len(self.store.links), "links": list(self.store.links)}

    async def callbacks_state(self) -> dict[str, Any]:
        return {"target": self.store.callback, "sent": list(self.sent_callbacks)}

    async def expire_tokens(self) -> dict[str, Any]:
        return {"expired": self.store.revoke_all()}

    async def get_config(self) -> dict[str, Any]:
        return self.control.config.model_dump()

    async def set_config(self, request: Request) -> Response:
        status, answer = configure_from_json(self.control, await request.body())
        return JSONResponse(answer, status_code=status)

    async def reset(self) -> dict[str, Any]:
        self.store.reset()
        self.control.reset()
        self.sent_callbacks.clear()
        self.stale_after_refresh = 0
        return {"reset": True}

    async def delete_externally(self, pass_id: str) -> Response:
        try:
            stored = self.store.find(pass_id)
        except StoreError:
            return JSONResponse({"detail": f"no live pass {pass_id}"}, status_code=404)
        self.store.delete(stored)
        self.store.save()
        return JSONResponse({"id": stored.id, "deleted": True})

    async def pass_page(self, pass_id: str) -> Response:
        return JSONResponse({"id": pass_id, "page": True})


def _same(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


def _status_matches(stored: StoredPass, status: str) -> bool:
    if status == "been_installed":
        return stored.installs > 0
    if status == "not_been_installed":
        return stored.installs == 0
    return stored.status == status


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _api_router(api: SandboxApi) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(api.gate)])
    add = router.add_api_route
    # The specific paths first: "id" and "template" would otherwise match {passId}.
    add("/pass/id/{external_id}/stats", api.stats, methods=["GET"])
    add("/pass/id/{external_id}", api.get_external, methods=["GET"])
    add("/pass/template/{template_id}/id/{external_id}", api.update_external, methods=["PUT"])
    add("/pass/{template_id}/id/{external_id}", api.create_external, methods=["POST"])
    add("/pass", api.list_passes, methods=["GET"])
    add("/pass/{template_id}", api.create, methods=["POST"])
    add("/pass/{pass_id}", api.get, methods=["GET"])
    add("/pass/{pass_id}", api.update, methods=["PUT"])
    add("/pass/{pass_id}", api.delete, methods=["DELETE"])
    add("/template/headers", api.template_headers, methods=["GET"])
    add("/links/adaptive", api.adaptive_link, methods=["POST"])
    add("/project/{project_id}/settings/callback", api.callback_settings, methods=["POST"])
    return router


def _control_router(api: SandboxApi) -> APIRouter:
    router = APIRouter(prefix="/_sandbox")
    add = router.add_api_route
    add("/stats", api.stats_state, methods=["GET"])
    add("/passes", api.passes_state, methods=["GET"])
    add("/state", api.neutral_state, methods=["GET"])
    add("/links", api.links_state, methods=["GET"])
    add("/callbacks", api.callbacks_state, methods=["GET"])
    add("/tokens/expire", api.expire_tokens, methods=["POST"])
    add("/config", api.get_config, methods=["GET"])
    add("/config", api.set_config, methods=["POST"])
    add("/reset", api.reset, methods=["POST"])
    add("/passes/{pass_id}/delete-externally", api.delete_externally, methods=["POST"])
    add("/passes/{pass_id}/install", api.install, methods=["POST"])
    add("/passes/{pass_id}/remove", api.remove, methods=["POST"])
    add("/p/{pass_id}", api.pass_page, methods=["GET"])
    return router


def create_sandbox_app(
    settings: AirshipSandboxSettings, *, clock: Callable[[], float] = time.time
) -> FastAPI:
    """Build a fresh sandbox; `clock` (Unix seconds) is what token expiry compares with."""
    api = SandboxApi(settings, clock)
    app = FastAPI(
        title="passsync Airship Wallet sandbox",
        docs_url="/_sandbox/docs",
        redoc_url=None,
        openapi_url="/_sandbox/openapi.json",
    )
    app.state.sandbox = api
    app.add_exception_handler(ApiError, _error_response)
    app.add_api_route("/token", api.token, methods=["POST"])
    app.include_router(_api_router(api))
    app.include_router(_control_router(api))
    return app
