"""A local PassKit Members-compatible HTTP API (the gateway's paths), plus /_sandbox inspection.

What it imitates (docs/passkit.md): the JWT check (HS256, uid = REST key, `iat` not ahead of
the server clock nor too old, a short `exp`) or a long-lived `Bearer` token; one member per
(program, externalId), 409 on a duplicate enrol; PATCH-style updates that ignore falsey
values unless `operation` is OPERATION_PUT; body-carrying DELETE; points earn/burn/set;
expiry; NDJSON streamed lists with offset paging (limit 25 by default); both error shapes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import jwt
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from worker.providers.common.sandbox import configure_from_json
from worker.providers.passkit.models import flatten_member
from worker.providers.passkit.sandbox.control import SandboxControl
from worker.providers.passkit.sandbox.store import (
    Duplicate,
    Invalid,
    SandboxStore,
    StoredMember,
    StoreError,
    known_member_keys,
    member_view,
)
from worker.providers.passkit.sandbox.webhooks import WebhookSender
from worker.providers.passkit.settings import PassKitSandboxSettings

GRPC_FOR_STATUS = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}


class ApiError(Exception):
    """Answered as grpc-gateway's error body {"code", "message", "details"}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        auth: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.auth = auth
        self.headers = headers


def _error_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.auth:
        # The auth layer answers before the gateway, in its own shape.
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    body = {"code": GRPC_FOR_STATUS.get(exc.status, 2), "message": exc.message, "details": []}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ClientDisconnect:
        # The client gave up (e.g. during a slow answer) before its body was read: no write.
        raise ApiError(499, "client closed request") from None
    except ValueError:
        raise ApiError(400, "proto: syntax error (line 1:1): unexpected token") from None
    if not isinstance(body, dict):
        raise ApiError(400, "proto: syntax error (line 1:1): expected an object")
    return body


def _line(item: dict[str, Any]) -> bytes:
    return (json.dumps(item, separators=(",", ":")) + "\n").encode()


class SandboxApi:
    """The routes; a class so each app instance owns its store and control."""

    def __init__(self, settings: PassKitSandboxSettings, clock: Callable[[], float]) -> None:
        self.store = SandboxStore(settings.programs, path=settings.store_path)
        self.control = SandboxControl(settings)
        self.webhooks = WebhookSender()
        self._clock = clock
        self._key = settings.api_key.get_secret_value()
        self._secret = settings.api_secret.get_secret_value()
        self._bearer = settings.long_lived_token.get_secret_value().encode()

    # -- gate: runs before every API route -----------------------------------------------------

    async def gate(self, request: Request) -> None:
        """Stats, auth, latency and pre-handler faults, in that order."""
        route = request.scope.get("route")
        template = getattr(route, "path", request.url.path)
        self.control.count_call(f"{request.method} {template}")
        self.authenticate(request.headers.get("authorization", ""))
        config = self.control.config
        wait = self.control.take_token()
        if wait is not None:
            headers = {"Retry-After": str(wait)} if config.send_retry_after else None
            raise ApiError(429, "too many requests", headers=headers)
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        if self.control.draw("slow"):
            # Held before the handler: a client that gives up meanwhile has changed nothing.
            await asyncio.sleep(config.slow_ms / 1000)
        fault = self.control.draw_error()
        if fault == "503":
            raise ApiError(503, "Server is unavailable. Back off for 250ms and repeat request")
        if fault == "500":
            raise ApiError(500, "Injected fault")

    def authenticate(self, value: str) -> None:
        """A long-lived `Bearer` token, or a fresh JWT as the bare header value."""
        if value.startswith("Bearer "):
            if hmac.compare_digest(value.removeprefix("Bearer ").encode(), self._bearer):
                return
            self._refuse("bearer", "invalid token")
        if not value:
            self._refuse("missing", "missing authorization header")
        try:
            header = jwt.get_unverified_header(value)
            claims = jwt.decode(
                value,
                self._secret,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidTokenError:
            self._refuse("signature", "invalid token")
        if header.get("alg") != "HS256":
            self._refuse("signature", "invalid token")
        self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> None:
        config = self.control.config
        uid, iat, exp = claims.get("uid"), claims.get("iat"), claims.get("exp")
        if not isinstance(uid, str) or not hmac.compare_digest(uid.encode(), self._key.encode()):
            self._refuse("uid", "invalid token")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            self._refuse("claims", "invalid token")
        now = self._clock()
        if iat > now + config.clock_skew_seconds:
            self._refuse("used_before_issued", "Token used before issued")
        if now - iat > config.max_token_age_seconds:
            self._refuse("too_old", "jwt was issued too long ago")
        if exp <= now:
            self._refuse("expired", "token is expired")
        if exp - now > config.max_token_lifetime_seconds:
            self._refuse("lifetime", "token expiry is too far in the future")

    def _refuse(self, reason: str, message: str) -> NoReturn:
        self.control.count_refused(reason)
        raise ApiError(401, message, auth=True)

    # -- helpers -------------------------------------------------------------------------------

    def view(self, stored: StoredMember) -> dict[str, Any]:
        return member_view(stored)

    async def committed(self, response: Response, *, created: bool = False) -> Response:
        """Count an applied write; maybe answer 500 anyway ("commit then fail")."""
        self.control.count_write(created=created)
        if self.control.config.answer_delay_ms > 0:
            await asyncio.sleep(self.control.config.answer_delay_ms / 1000)
        if self.control.draw("commit_then_fail"):
            raise ApiError(500, "internal error")
        return response

    async def notify(self, event: str, stored: StoredMember, *, platform: str | None = None) -> int:
        """Call back the program's sinks subscribed to `event` about one member."""
        numeric = self.control.config.webhook_numeric_enums
        return await self.webhooks.send(
            self.store.sinks(), event, self.view(stored), platform=platform, numeric=numeric
        )

    def _store_call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Duplicate as exc:
            raise ApiError(self.control.config.duplicate_status, str(exc)) from None
        except StoreError as exc:
            raise ApiError(exc.status, str(exc)) from None

    # -- members -------------------------------------------------------------------------------

    def _known_keys(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = self.control.config.unknown_properties
        result: dict[str, Any] = self._store_call(lambda: known_member_keys(body, unknown))
        return result

    async def enrol(self, request: Request) -> Response:
        body = self._known_keys(await _json_object(request))
        stored = self._store_call(lambda: self.store.enrol(body))
        answer = await self.committed(JSONResponse({"id": stored.id}), created=True)
        await self.notify("PASS_EVENT_RECORD_CREATED", stored)
        return answer

    async def get_by_id(self, member_id: str) -> Response:
        stored = self._store_call(lambda: self.store.find(member_id))
        return JSONResponse(self.view(stored))

    async def get_by_external_id(self, program_id: str, external_id: str) -> Response:
        self._store_call(lambda: self.store.program(program_id))
        stored = self._store_call(lambda: self.store.find_external(program_id, external_id))
        return JSONResponse(self.view(stored))

    async def update(self, request: Request) -> Response:
        body = self._known_keys(await _json_object(request))
        stored = self._store_call(lambda: self.store.update(body))
        answer = await self.committed(JSONResponse({"id": stored.id}))
        await self.notify("PASS_EVENT_RECORD_UPDATED", stored)
        return answer

    async def delete(self, request: Request) -> Response:
        body = await _json_object(request)
        stored = self._store_call(lambda: self.store.delete(body))
        answer = await self.committed(JSONResponse({}))
        await self.notify("PASS_EVENT_RECORD_DELETED", stored)
        return answer

    async def points(self, kind: str, request: Request) -> Response:
        body = await _json_object(request)
        stored = self._store_call(lambda: self.store.points(kind, body))
        data = stored.data
        answer = {
            "id": stored.id,
            "externalId": data.get("externalId", ""),
            "programId": data["programId"],
            "points": data.get("points", 0),
            "secondaryPoints": data.get("secondaryPoints", 0),
            "tierPoints": data.get("tierPoints", 0),
        }
        return await self.committed(JSONResponse(answer))

    async def earn(self, request: Request) -> Response:
        return await self.points("earn", request)

    async def burn(self, request: Request) -> Response:
        return await self.points("burn", request)

    async def set_points(self, request: Request) -> Response:
        return await self.points("set", request)

    async def update_expiry(self, request: Request) -> Response:
        body = await _json_object(request)
        stored = self._store_call(lambda: self.store.update_expiry(body))
        answer = await self.committed(JSONResponse({"id": stored.id}))
        expired = self.view(stored).get("status") == "EXPIRED"
        await self.notify(
            "PASS_EVENT_INVALIDATED" if expired else "PASS_EVENT_RECORD_UPDATED", stored
        )
        return answer

    async def list_members(self, program_id: str, request: Request) -> Response:
        body = await _json_object(request) if await request.body() else {}
        rows = self._store_call(lambda: self.store.members(program_id))
        return self.stream([self.view(m) for m in rows], body.get("filters"))

    async def count_members(self, program_id: str) -> Response:
        rows = self._store_call(lambda: self.store.members(program_id))
        return JSONResponse({"total": str(len(rows))})

    # -- programs and tiers ----------------------------------------------------------------------

    async def list_programs(self, request: Request) -> Response:
        body = await _json_object(request) if await request.body() else {}
        return self.stream(self.store.programs(), body)

    async def get_program(self, program_id: str) -> Response:
        program = self._store_call(lambda: self.store.program(program_id))
        return JSONResponse({"id": program.id, "name": program.name})

    async def list_tiers(self, request: Request) -> Response:
        body = await _json_object(request)
        program_id = body.get("programId")
        if not isinstance(program_id, str) or not program_id:
            raise ApiError(400, "programId is required")
        tiers = self._store_call(lambda: self.store.tiers(program_id))
        return self.stream(tiers, body.get("filters"))

    async def get_tier(self, program_id: str, tier_id: str) -> Response:
        return JSONResponse(self._store_call(lambda: self.store.tier(program_id, tier_id)))

    def stream(self, rows: list[dict[str, Any]], filters: Any) -> Response:
        """One {"result"} line per row, offset-paged; maybe an {"error"} line mid-stream."""
        filters = filters if isinstance(filters, dict) else {}
        limit = _int(filters.get("limit"), 0) or self.control.config.default_list_limit
        offset = max(_int(filters.get("offset"), 0), 0)
        page = rows[offset:] if limit < 0 else rows[offset : offset + limit]
        broken = bool(page) and self.control.draw("stream_error")

        async def lines() -> AsyncIterator[bytes]:
            for index, row in enumerate(page):
                if broken and index >= len(page) // 2:
                    error = {"code": 14, "message": "transport is closing", "details": []}
                    yield _line({"error": error})
                    return
                yield _line({"result": row})

        return StreamingResponse(lines(), media_type="application/json")

    # -- messages ------------------------------------------------------------------------------

    async def create_message(self, request: Request) -> Response:
        body = await _json_object(request)
        message_id = self._store_call(lambda: self.store.create_message(body))
        return await self.committed(JSONResponse({"id": message_id}))

    async def send_message(self, request: Request) -> Response:
        body = await _json_object(request)
        count = self._store_call(lambda: self.store.send_message(body))
        return await self.committed(JSONResponse({"count": count}))

    # -- webhook subscriptions ("sinks") --------------------------------------------------------

    async def create_sink(self, request: Request) -> Response:
        body = await _json_object(request)
        sink = self._store_call(lambda: self.store.add_sink(body))
        return await self.committed(JSONResponse({"id": sink.id}))

    async def update_sink(self, request: Request) -> Response:
        body = await _json_object(request)
        sink = self._store_call(lambda: self.store.update_sink(body))
        return await self.committed(JSONResponse({"id": sink.id}))

    async def get_sink(self, protocol: str, sink_id: str) -> Response:
        return JSONResponse(self._store_call(lambda: self.store.sink(sink_id)).row())

    async def delete_sink(self, protocol: str, sink_id: str) -> Response:
        self._store_call(lambda: self.store.delete_sink(sink_id))
        return await self.committed(JSONResponse({}))

    async def list_sinks(self, request: Request) -> Response:
        body = await _json_object(request) if await request.body() else {}
        rows = [s.row() for s in self.store.sinks()]
        return self.stream(rows, body.get("filters") if "filters" in body else body)

    # -- /_sandbox inspection and control ------------------------------------------------------

    async def device(self, member_id: str, action: str, request: Request) -> Response:
        """A test's stand-in for a phone: the pass is saved (install) or removed."""
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        try:
            stored = self.store.find(member_id)
        except StoreError:
            return JSONResponse({"detail": f"no live member {member_id}"}, status_code=404)
        event = "PASS_EVENT_INSTALLED" if action == "install" else "PASS_EVENT_UNINSTALLED"
        platform = str(body.get("platform") or "IOS") if isinstance(body, dict) else "IOS"
        sent = await self.notify(event, stored, platform=platform)
        return JSONResponse({"id": stored.id, "event": event, "sent": sent})

    async def install(self, member_id: str, request: Request) -> Response:
        return await self.device(member_id, "install", request)

    async def remove(self, member_id: str, request: Request) -> Response:
        return await self.device(member_id, "remove", request)

    async def pass_page(self, name: str) -> Response:
        """The pass page a member's links point to (`.pkpass` / `.gpay` suffixes too)."""
        member_id = name.removesuffix(".pkpass").removesuffix(".gpay")
        try:
            stored = self.store.find(member_id)
        except StoreError:
            return JSONResponse({"detail": f"no live member {member_id}"}, status_code=404)
        view = self.view(stored)
        return JSONResponse({"id": stored.id, "externalId": view.get("externalId"), "pass": name})

    async def webhooks_state(self) -> dict[str, Any]:
        return {"count": len(self.webhooks.sent), "webhooks": list(self.webhooks.sent)}

    async def sinks_state(self) -> dict[str, Any]:
        rows = [s.row() for s in self.store.sinks()]
        return {"count": len(rows), "sinks": rows}

    async def stats(self) -> dict[str, Any]:
        return self.control.stats()

    async def members_state(self) -> dict[str, Any]:
        rows = []
        for stored in self.store.all_members():
            view = self.view(stored)
            rows.append(
                {
                    **view,
                    "voided": view.get("status") == "EXPIRED",
                    "deleted": stored.deleted,
                    "events": list(stored.events),
                }
            )
        return {"count": len(rows), "members": rows}

    async def neutral_state(self) -> dict[str, Any]:
        """Every member in the core's neutral terms (SandboxPass): for demos and fault suites.

        `template` is the name rules write: the program's name for its first tier, else
        "Program/Tier"; `fields` are the flat rule fields (points kept even at 0, the expiry
        left out).
        """
        names = {}
        for program in self.store.programs():
            tiers = self.store.tiers(program["id"])
            for index, tier in enumerate(tiers):
                key = (program["id"], tier["id"])
                names[key] = program["name"] if index == 0 else f"{program['name']}/{tier['name']}"
        rows = []
        for stored in self.store.all_members():
            data = stored.data
            rows.append(
                {
                    "pass_id": stored.id,
                    "external_id": data.get("externalId"),
                    "template": names.get((data["programId"], data["tierId"])),
                    # The expiry is how a void is done: `voided` reports it, not the fields.
                    "fields": {k: v for k, v in flatten_member(data).items() if k != "expiryDate"},
                    "voided": self.view(stored).get("status") == "EXPIRED",
                    "deleted": stored.deleted,
                }
            )
        return {"count": len(rows), "passes": rows}

    async def programs_state(self) -> dict[str, Any]:
        rows = [{**p, "tiers": self.store.tiers(p["id"])} for p in self.store.programs()]
        return {"count": len(rows), "programs": rows}

    async def messages_state(self) -> dict[str, Any]:
        rows = self.store.sent_messages()
        return {"count": len(rows), "messages": rows}

    async def get_config(self) -> dict[str, Any]:
        return self.control.config.model_dump()

    async def set_config(self, request: Request) -> Response:
        status, answer = configure_from_json(self.control, await request.body())
        return JSONResponse(answer, status_code=status)

    async def reset(self) -> dict[str, Any]:
        self.webhooks.reset()
        self.store.reset()
        self.control.reset()
        return {"reset": True}

    async def delete_externally(self, member_id: str) -> Response:
        try:
            stored = self.store.delete_externally(member_id)
        except (StoreError, Invalid):
            return JSONResponse({"detail": f"no live member {member_id}"}, status_code=404)
        return JSONResponse({"id": stored.id, "deleted": True})


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def _api_router(api: SandboxApi) -> APIRouter:
    router = APIRouter(dependencies=[Depends(api.gate)])
    add = router.add_api_route
    add("/members/member", api.enrol, methods=["POST"])
    add("/members/member", api.update, methods=["PUT"])
    add("/members/member", api.delete, methods=["DELETE"])
    add("/members/member/id/{member_id}", api.get_by_id, methods=["GET"])
    add(
        "/members/member/externalId/{program_id}/{external_id:path}",
        api.get_by_external_id,
        methods=["GET"],
    )
    add("/members/member/points/earn", api.earn, methods=["PUT"])
    add("/members/member/points/burn", api.burn, methods=["PUT"])
    add("/members/member/points/set", api.set_points, methods=["PUT"])
    add("/members/member/updateExpiry", api.update_expiry, methods=["PUT"])
    add("/members/member/list/{program_id}", api.list_members, methods=["POST"])
    add("/members/count/{program_id}", api.count_members, methods=["POST"])
    add("/members/programs/list", api.list_programs, methods=["POST"])
    add("/members/program/{program_id}", api.get_program, methods=["GET"])
    add("/members/tiers/list", api.list_tiers, methods=["POST"])
    add("/members/tier/{program_id}/{tier_id}", api.get_tier, methods=["GET"])
    add("/message", api.create_message, methods=["POST"])
    add("/message/send", api.send_message, methods=["POST"])
    add("/integrations/sink", api.create_sink, methods=["POST"])
    add("/integrations/sink", api.update_sink, methods=["PUT"])
    add("/integrations/sink/{protocol}/{sink_id}", api.get_sink, methods=["GET"])
    add("/integrations/sink/{protocol}/{sink_id}", api.delete_sink, methods=["DELETE"])
    add("/integrations/sinks/list", api.list_sinks, methods=["POST"])
    return router


def _control_router(api: SandboxApi) -> APIRouter:
    router = APIRouter(prefix="/_sandbox")
    add = router.add_api_route
    add("/stats", api.stats, methods=["GET"])
    add("/members", api.members_state, methods=["GET"])
    add("/programs", api.programs_state, methods=["GET"])
    add("/state", api.neutral_state, methods=["GET"])
    add("/messages", api.messages_state, methods=["GET"])
    add("/config", api.get_config, methods=["GET"])
    add("/config", api.set_config, methods=["POST"])
    add("/reset", api.reset, methods=["POST"])
    add("/members/{member_id}/delete-externally", api.delete_externally, methods=["POST"])
    add("/members/{member_id}/install", api.install, methods=["POST"])
    add("/members/{member_id}/remove", api.remove, methods=["POST"])
    add("/webhooks", api.webhooks_state, methods=["GET"])
    add("/pass/{name}", api.pass_page, methods=["GET"])
    add("/sinks", api.sinks_state, methods=["GET"])
    return router


def create_sandbox_app(
    settings: PassKitSandboxSettings, *, clock: Callable[[], float] = time.time
) -> FastAPI:
    """Build a fresh sandbox; `clock` (Unix seconds) is what the JWT check compares with."""
    api = SandboxApi(settings, clock)
    app = FastAPI(
        title="passsync PassKit sandbox",
        docs_url="/_sandbox/docs",
        redoc_url=None,
        openapi_url="/_sandbox/openapi.json",
    )
    app.state.sandbox = api
    app.add_exception_handler(ApiError, _error_response)
    app.include_router(_api_router(api))
    app.include_router(_control_router(api))
    return app
