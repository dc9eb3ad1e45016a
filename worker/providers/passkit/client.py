"""PassKit Members REST client: the PassProvider port over httpx, with bounded retries.

Paths, verbs and bodies are the ones PassKit's gateway binds (reference: the vendor's Go SDK);
docs/passkit.md lists what is unconfirmed and the setting for each. A pass is a member; a
template is a program and tier ("{programId}/{tierId}"); the pass's external id is the
member's `externalId`, unique per program.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

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
    ProviderError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from worker.providers.passkit.auth import PassKitAuth
from worker.providers.passkit.models import (
    POINT_FIELDS,
    Member,
    MemberPoints,
    Program,
    Tier,
    flatten_member,
    split_fields,
    timestamp,
)
from worker.providers.passkit.settings import PassKitSettings
from worker.providers.paths import path_segment
from worker.providers.port import ProviderPass, ProviderTemplate

log = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# Member fields PassKit sets itself: left out of a full-record update.
READ_ONLY_MEMBER_KEYS = frozenset({"created", "updated"})
# How many external ids' programs a client remembers for adopting after a duplicate enrol.
REMEMBERED_PROGRAMS = 10_000
# gRPC codes (in a stream's {"error"} line or an error body) that are worth repeating.
TRANSIENT_GRPC_CODES = frozenset({4, 8, 10, 13, 14})  # deadline, exhausted, aborted, internal, n/a
DEFAULT_PATHS: dict[str, str] = {
    "enrol": "/members/member",
    "update": "/members/member",
    "delete": "/members/member",
    "get_by_id": "/members/member/id/{id}",
    "get_by_external_id": "/members/member/externalId/{programId}/{externalId}",
    "points_earn": "/members/member/points/earn",
    "points_burn": "/members/member/points/burn",
    "points_set": "/members/member/points/set",
    "update_expiry": "/members/member/updateExpiry",
    "list_members": "/members/member/list/{programId}",
    "count_members": "/members/count/{programId}",
    "list_programs": "/members/programs/list",
    "list_tiers": "/members/tiers/list",
    "create_message": "/message",
    "send_message": "/message/send",
    "create_sink": "/integrations/sink",
    "list_sinks": "/integrations/sinks/list",
    "delete_sink": "/integrations/sink/{protocol}/{id}",
}


@dataclass(frozen=True, slots=True)
class _Spec:
    """One logical call: its route, path parameters and body."""

    action: str
    method: str
    route: str
    path_params: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    pass_ref: str | None = None
    # Retried after any transient failure only when repeating it cannot do harm twice.
    idempotent: bool = True
    # A 404 on a retry means our earlier, unanswered attempt did the delete.
    gone_after_retry_is_success: bool = False
    stream: bool = False


_InvalidBodyError = InvalidBodyError
__all__ = ["CallRecord", "Outcome", "PassKitClient", "parse_retry_after"]


class PassKitClient:
    """PassProvider for PassKit Members plus points, lists and programs; raises providers.errors.

    Actions (CallRecord names): enrol, update, points_set, points_earn, points_burn,
    update_expiry, delete, get_by_id, get_by_external_id, list_members, count_members,
    list_programs, list_tiers, create_message, send_message.
    """

    name = "passkit"

    def __init__(
        self,
        settings: PassKitSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        on_attempt: Callable[[CallRecord], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._duplicate = re.compile(settings.duplicate_pattern)
        self._paths = {**DEFAULT_PATHS, **settings.paths}
        self._links = settings.link_base()
        # externalId -> programId of the enrols this client sent, to adopt a duplicate.
        self._programs_of: OrderedDict[str, str] = OrderedDict()
        self._programs_lock = threading.Lock()
        self._caller = HttpCaller(
            RetryPolicy.of(settings),
            on_attempt=on_attempt,
            sleep=sleep,
        )
        self._http = http_client(
            settings.api_base(),
            timeout_seconds=settings.timeout_seconds,
            connect_timeout_seconds=settings.connect_timeout_seconds,
            transport=transport,
            auth=PassKitAuth(settings, clock=clock),
        )

    # -- the port ------------------------------------------------------------------------------

    def create_pass(
        self, *, template_id: str, user_provided_id: str | None, fields: dict[str, Any]
    ) -> ProviderPass:
        """Enrol a member; AlreadyExistsError when the program has this externalId already.

        Retried after an unanswered attempt only with an externalId: the program's uniqueness
        guard turns a repeat into AlreadyExistsError, which the caller adopts.
        """
        program_id, tier_id = split_template_id(template_id)
        body: dict[str, Any] = {"programId": program_id, "tierId": tier_id}
        if user_provided_id is not None:
            body["externalId"] = user_provided_id
            self._remember(user_provided_id, program_id)
        body.update(split_fields(fields).body())
        spec = _Spec(
            "enrol",
            "POST",
            "enrol",
            body=body,
            pass_ref=user_provided_id,
            idempotent=user_provided_id is not None,
        )
        member_id = self._call(spec, _id_of("enrol"))
        return self._provider_pass(
            member_id, user_provided_id, template_id, fields=fields, voided=False
        )

    def update_pass(self, pass_id: str, fields: dict[str, Any]) -> ProviderPass:
        """Apply `fields`; PUT is PATCH-style, so falsey values take the documented routes.

        Zero points go through `points/set` (resetPoints...); another 0, "" or false makes a
        full-record update (the member is read, merged and sent with OPERATION_PUT).
        """
        zeroed = [n for n in POINT_FIELDS if n in fields and _is_zero(fields[n])]
        rest = {k: v for k, v in fields.items() if k not in zeroed}
        parts = split_fields(rest)
        if parts.falsey():
            current = self.get_member(pass_id)
            merged = _merge(current, parts.body())
            merged["operation"] = "OPERATION_PUT"
            self._update(pass_id, merged)
        elif rest:
            self._update(pass_id, {"id": pass_id, **parts.body()})
        if zeroed:
            reset = {f"reset{n[0].upper()}{n[1:]}": True for n in zeroed}
            self.set_points(pass_id, **reset)
        return self._provider_pass(pass_id, None, None, fields=fields, voided=None)

    def get_pass(self, identifier: str, *, template_id: str | None = None) -> ProviderPass:
        """By member id or externalId; NotFoundError if neither finds a member.

        An externalId is looked up in the program of `template_id`, else in the program this
        client enrolled it in, else in every program (PassKit's lookup needs the program).
        """
        program = split_template_id(template_id)[0] if template_id else None
        with self._programs_lock:
            program = program or self._programs_of.get(identifier)
        if program is not None:
            member = self.get_member_by_external_id(program, identifier)
        else:
            member = self._find_anywhere(identifier)
        return self.to_provider_pass(member)

    def list_templates(self) -> list[ProviderTemplate]:
        """Every program's tiers: "Program/Tier name", "Program/tierId", "Program" (first tier)."""
        sep = self._settings.template_separator
        out: list[ProviderTemplate] = []
        for program in self.list_programs():
            tiers = sorted(self.list_tiers(program.id), key=lambda t: t.tierIndex)
            for index, tier in enumerate(tiers):
                template = f"{program.id}/{tier.id}"
                names = {
                    f"{program.name}{sep}{tier.name or tier.id}",
                    f"{program.name}{sep}{tier.id}",
                }
                if index == 0:
                    names.add(program.name)
                out.extend(ProviderTemplate(template_id=template, name=n) for n in sorted(names))
        return out

    def set_voided(self, pass_id: str, voided: bool) -> ProviderPass:
        """Void = expire now (the barcode greys out); unvoid = an expiry far ahead."""
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        s = self._settings
        when = (
            now - timedelta(seconds=s.void_backdate_seconds)
            if voided
            else now + timedelta(days=s.unvoid_expiry_days)
        )
        body = {"id": pass_id, "expiryDate": timestamp(when)}
        spec = _Spec("update_expiry", "PUT", "update_expiry", body=body, pass_ref=pass_id)
        self._call(spec, _id_of("update_expiry", fallback=pass_id))
        return self._provider_pass(pass_id, None, None, fields={}, voided=voided)

    def delete_pass(self, pass_id: str, *, missing_ok: bool = False) -> None:
        """DELETE /members/member with a JSON body; NotFoundError when already gone."""
        spec = _Spec(
            "delete",
            "DELETE",
            "delete",
            body={"id": pass_id},
            pass_ref=pass_id,
            gone_after_retry_is_success=True,
        )
        try:
            self._call(spec, _ignore)
        except NotFoundError:
            if not missing_ok:
                raise

    def send_push(self, pass_id: str, message: str) -> None:
        """A message to one pass: create it, then send it to the member's pass."""
        if not message.strip():
            raise RejectedError("send_message: the message text is empty")
        body = {"title": self._settings.message_title, "plainTextContent": message}
        create = _Spec(
            "create_message",
            "POST",
            "create_message",
            body=body,
            pass_ref=pass_id,
            idempotent=False,
        )
        message_id = self._call(create, _id_of("create_message"))
        send = _Spec(
            "send_message",
            "POST",
            "send_message",
            body={"messageId": message_id, "passIds": {"ids": [pass_id]}},
            pass_ref=pass_id,
            idempotent=False,
        )
        self._call(send, _ignore)

    # -- members -------------------------------------------------------------------------------

    def get_member(self, member_id: str) -> dict[str, Any]:
        """The raw Member by PassKit id; NotFoundError if unknown."""
        spec = _Spec("get_by_id", "GET", "get_by_id", {"id": member_id}, pass_ref=member_id)
        return self._call(spec, _member_dict("get_by_id"))

    def get_member_by_external_id(self, program_id: str, external_id: str) -> dict[str, Any]:
        """The raw Member by program and externalId; NotFoundError if unknown."""
        params = {"programId": program_id, "externalId": external_id}
        spec = _Spec(
            "get_by_external_id", "GET", "get_by_external_id", params, pass_ref=external_id
        )
        return self._call(spec, _member_dict("get_by_external_id"))

    def _find_anywhere(self, identifier: str) -> dict[str, Any]:
        try:
            return self.get_member(identifier)
        except NotFoundError:
            pass
        for program in self.list_programs():
            try:
                return self.get_member_by_external_id(program.id, identifier)
            except NotFoundError:
                continue
        raise NotFoundError(f"get_pass: no member with id or externalId {identifier!r}", status=404)

    def iter_members(
        self, program_id: str, *, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every member of a program, page by page (offset paging over the NDJSON stream)."""

        def body(limit: int, offset: int) -> dict[str, Any]:
            return {"programId": program_id, "filters": _filters(limit, offset)}

        yield from self._pages(
            "list_members", "list_members", body, {"programId": program_id}, page_size
        )

    def list_members_page(
        self, program_id: str, *, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """One page of a program's members (one call): `limit` rows from `offset`."""
        body = {"programId": program_id, "filters": _filters(limit, offset)}
        spec = _Spec(
            "list_members",
            "POST",
            "list_members",
            {"programId": program_id},
            body=body,
            stream=True,
        )
        rows: list[dict[str, Any]] = self._call(spec, _identity)
        return rows

    def count_members(self, program_id: str) -> int:
        spec = _Spec(
            "count_members",
            "POST",
            "count_members",
            {"programId": program_id},
            body={"programId": program_id, "filters": {}},
        )
        return self._call(spec, _total)

    def earn_points(self, pass_id: str, points: float) -> MemberPoints:
        """Add points (not repeated after an answered failure: it is not idempotent)."""
        return self._points("points_earn", pass_id, {"points": _amount(points)}, idempotent=False)

    def burn_points(self, pass_id: str, points: float) -> MemberPoints:
        """Take points (not repeated after an answered failure: it is not idempotent)."""
        return self._points("points_burn", pass_id, {"points": _amount(points)}, idempotent=False)

    def set_points(
        self,
        pass_id: str,
        *,
        points: float | None = None,
        secondaryPoints: float | None = None,
        tierPoints: int | None = None,
        resetPoints: bool = False,
        resetSecondaryPoints: bool = False,
        resetTierPoints: bool = False,
    ) -> MemberPoints:
        """Set balances; a zero balance needs its reset flag (a 0 value is ignored)."""
        values = {"points": points, "secondaryPoints": secondaryPoints, "tierPoints": tierPoints}
        body: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
        resets = {
            "resetPoints": resetPoints,
            "resetSecondaryPoints": resetSecondaryPoints,
            "resetTierPoints": resetTierPoints,
        }
        for flag, name in zip(resets, values, strict=True):
            if resets[flag] or (name in body and _is_zero(body[name])):
                body.pop(name, None)
                body[flag] = True
        return self._points("points_set", pass_id, body, idempotent=True)

    def _points(
        self, route: str, pass_id: str, amounts: dict[str, Any], *, idempotent: bool
    ) -> MemberPoints:
        spec = _Spec(
            route,
            "PUT",
            route,
            body={"id": pass_id, **amounts},
            pass_ref=pass_id,
            idempotent=idempotent,
        )
        return self._call(spec, _model(MemberPoints, route))

    def _update(self, pass_id: str, body: dict[str, Any]) -> None:
        spec = _Spec("update", "PUT", "update", body=body, pass_ref=pass_id)
        self._call(spec, _id_of("update", fallback=pass_id))

    # -- programs and tiers --------------------------------------------------------------------

    def list_programs(self) -> list[Program]:
        rows = self._pages("list_programs", "list_programs", _filters, {}, None)
        return [_model(Program, "list_programs")(row) for row in rows]

    def list_tiers(self, program_id: str) -> list[Tier]:
        def body(limit: int, offset: int) -> dict[str, Any]:
            return {"programId": program_id, "filters": _filters(limit, offset)}

        rows = self._pages("list_tiers", "list_tiers", body, {}, None)
        return [_model(Tier, "list_tiers")(row) for row in rows]

    def _pages(
        self,
        action: str,
        route: str,
        body: Callable[[int, int], dict[str, Any]],
        path_params: dict[str, str],
        page_size: int | None,
    ) -> Iterator[dict[str, Any]]:
        """Offset paging: a page shorter than the limit is the last one."""
        limit = page_size or self._settings.page_size
        for page in range(self._settings.max_pages):
            spec = _Spec(
                action, "POST", route, path_params, body=body(limit, page * limit), stream=True
            )
            rows: list[dict[str, Any]] = self._call(spec, _identity)
            yield from rows
            if len(rows) < limit:
                return
        raise RejectedError(f"{action}: more than max_pages={self._settings.max_pages} pages")

    # -- webhooks ("sink subscriptions") --------------------------------------------------------

    def subscribe_webhook(
        self,
        program_id: str,
        target_url: str,
        events: list[str],
        *,
        signing_secret: str | None = None,
    ) -> str:
        """A MEMBERSHIP webhook of a program; `configuration` is a JSON *string* (V-code).

        Not idempotent (a repeat makes a second subscription), so retried only if never sent.
        """
        config: dict[str, Any] = {"targetUrl": target_url}
        if signing_secret is not None:
            config["signingSecret"] = signing_secret
        body = {
            "classId": program_id,
            "protocol": "MEMBERSHIP",
            "passEventId": list(events),
            "status": "INTEGRATION_ACTIVE",
            "configType": "WEBHOOK",
            "configuration": json.dumps(config),
        }
        spec = _Spec("create_sink", "POST", "create_sink", body=body, idempotent=False)
        return self._call(spec, _id_of("create_sink"))

    def list_webhooks(self) -> list[dict[str, Any]]:
        """Every sink subscription, with its `configuration` string as PassKit holds it."""
        return list(self._pages("list_sinks", "list_sinks", _filters, {}, None))

    def delete_webhook(self, subscription_id: str) -> None:
        params = {"protocol": "MEMBERSHIP", "id": subscription_id}
        spec = _Spec("delete_sink", "DELETE", "delete_sink", params)
        self._call(spec, _ignore)

    # -- shapes --------------------------------------------------------------------------------

    def to_provider_pass(self, raw: dict[str, Any]) -> ProviderPass:
        """A raw Member as the port's ProviderPass (links on the region's pass host)."""
        member = _model(Member, "member")(raw)
        template = (
            f"{member.programId}/{member.tierId}" if member.programId and member.tierId else None
        )
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        return self._provider_pass(
            member.id,
            member.externalId,
            template,
            fields=flatten_member(raw),
            voided=member.voided(now),
        )

    def _provider_pass(
        self,
        member_id: str,
        external_id: str | None,
        template_id: str | None,
        *,
        fields: dict[str, Any],
        voided: bool | None,
    ) -> ProviderPass:
        page = f"{self._links}/{quote(member_id, safe='')}"
        return ProviderPass(
            pass_id=member_id,
            user_provided_id=external_id,
            template_id=template_id,
            voided=bool(voided),
            fields=fields,
            download_page=page,
            iphone_uri=f"{page}.pkpass",
            android_uri=f"{page}.gpay",
        )

    def _remember(self, external_id: str, program_id: str) -> None:
        with self._programs_lock:
            self._programs_of[external_id] = program_id
            self._programs_of.move_to_end(external_id)
            while len(self._programs_of) > REMEMBERED_PROGRAMS:
                self._programs_of.popitem(last=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PassKitClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the call machinery --------------------------------------------------------------------

    def _call(self, spec: _Spec, parse: Callable[[Any], T]) -> T:
        """Bounded retries of transient failures; every attempt is recorded with its outcome.

        A 429 (none is documented) is raised at once: the pause belongs to the shared limiter.
        """
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
            return self._http.request(spec.method, path, content=content, headers=headers)

        call = Call(
            spec.action,
            spec.method,
            template,
            spec.pass_ref,
            idempotent=spec.idempotent,
            gone_after_retry_is_success=spec.gone_after_retry_is_success,
        )
        return self._caller.call(call, send, lambda r: self._interpret(spec, r), parse)

    def _interpret(self, spec: _Spec, response: httpx.Response) -> Any:
        action = spec.action
        status = response.status_code
        if status == 429:
            retry_after = self._retry_after(response)
            raise RateLimitedError(
                f"{action}: rate limited by PassKit (429); retry after {retry_after:g}s",
                retry_after=retry_after,
            )
        if status >= 500:
            hint = " (PassKit: back off and repeat)" if status == 503 else ""
            raise TransientError(
                f"{action}: PassKit answered {status}{hint}{_detail(response)}", status=status
            )
        if status >= 400:
            raise self._rejection(action, status, error_messages(_body_or_text(response)))
        if status >= 300:
            raise RejectedError(f"{action}: unexpected redirect ({status})", status=status)
        if spec.stream:
            return parse_stream(action, response.text)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "unknown content type")
            raise _InvalidBodyError(
                f"{action}: expected JSON but got {kind} (status {status}): "
                f"{snippet(response.text)!r}",
                status=status,
            ) from None

    def _rejection(self, action: str, status: int, messages: list[str]) -> RejectedError:
        joined = "; ".join(messages)
        reason = f": {joined}" if joined else ""
        if status in (401, 403):
            how = (
                "the long-lived token"
                if self._settings.auth == "long_lived_token"
                else "the REST api_key and secret (and the clock: JWTs live under a minute)"
            )
            return RejectedError(
                f"{action}: PassKit refused the credentials ({status}){reason}; check {how} "
                f"and the account's region ({self._settings.region})",
                status=status,
                messages=messages,
            )
        if action == "enrol" and (
            status in self._settings.duplicate_statuses
            or (status == 400 and any(self._duplicate.search(m) for m in messages))
        ):
            return AlreadyExistsError(
                f"{action}: externalId already used in the program ({status}){reason}",
                status=status,
                messages=messages,
            )
        if status == 404:
            return NotFoundError(
                f"{action}: not found (404){reason}", status=404, messages=messages
            )
        return RejectedError(
            f"{action}: rejected ({status}){reason}", status=status, messages=messages
        )

    def _retry_after(self, response: httpx.Response) -> float:
        parsed = parse_retry_after(response.headers.get(self._settings.retry_after_header))
        return self._settings.default_retry_after_seconds if parsed is None else parsed


# -- parsing helpers (pure) ------------------------------------------------------------------


def split_template_id(template_id: str) -> tuple[str, str]:
    """ "{programId}/{tierId}" -> (programId, tierId); RejectedError when malformed."""
    program, sep, tier = template_id.partition("/")
    if not sep or not program or not tier:
        raise RejectedError(f"PassKit template id {template_id!r} is not '<programId>/<tierId>'")
    return program, tier


def parse_stream(action: str, text: str) -> list[dict[str, Any]]:
    """One JSON object per line: {"result": {...}} rows; an {"error": {...}} line raises."""
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise _InvalidBodyError(f"{action}: a stream line is not JSON") from None
        if not isinstance(item, dict):
            raise _InvalidBodyError(f"{action}: a stream line is not a JSON object")
        if "error" in item:
            raise _stream_error(action, item["error"])
        result = item.get("result")
        if isinstance(result, dict):
            rows.append(result)
    return rows


def _stream_error(action: str, error: Any) -> ProviderError:
    messages = error_messages(error)
    code = error.get("code") if isinstance(error, dict) else None
    text = f"{action}: the stream broke off: {'; '.join(messages) or 'error'}"
    if code in TRANSIENT_GRPC_CODES or code is None:
        return TransientError(text)
    return RejectedError(text, messages=messages)


def error_messages(body: Any) -> list[str]:
    """Reasons from either error shape: {"code","message","details"} or {"error": ...}."""
    if body is None:
        return []
    if isinstance(body, str):
        text = snippet(body)
        return [text] if text else []
    if not isinstance(body, dict):
        return [snippet(str(body))]
    messages: list[str] = []
    for key in ("message", "error"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            messages.append(value.strip())
        elif isinstance(value, dict):
            messages.extend(error_messages(value))
    return messages


def _body_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _detail(response: httpx.Response) -> str:
    messages = error_messages(_body_or_text(response))
    return f": {'; '.join(messages)}" if messages else ""


def _filters(limit: int, offset: int) -> dict[str, Any]:
    return {"limit": limit, "offset": offset}


def _id_of(action: str, *, fallback: str | None = None) -> Callable[[Any], str]:
    """Parser of an `io.Id` answer {"id": "..."}."""

    def parse(body: Any) -> str:
        value = body.get("id") if isinstance(body, dict) else None
        if isinstance(value, str) and value:
            return value
        if fallback is not None:
            return fallback
        raise _InvalidBodyError(f"{action}: the response holds no id")

    return parse


def _member_dict(action: str) -> Callable[[Any], dict[str, Any]]:
    def parse(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
            raise _InvalidBodyError(f"{action}: the response is not a member")
        return body

    return parse


def _total(body: Any) -> int:
    value: Any = body.get("total", 0) if isinstance(body, dict) else None
    try:
        return int(value)  # protojson writes uint64 as a string
    except (TypeError, ValueError):
        raise _InvalidBodyError("count_members: the response holds no total") from None


def _model(model: type[M], action: str) -> Callable[[Any], M]:
    def parse(body: Any) -> M:
        try:
            return model.model_validate({} if body is None else body)
        except ValidationError as exc:
            where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
            raise _InvalidBodyError(
                f"{action}: the response does not match {model.__name__} ({where})"
            ) from None

    return parse


def _merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The member with `changes` applied (person and metaData merged key by key)."""
    merged = {k: v for k, v in current.items() if k not in READ_ONLY_MEMBER_KEYS}
    person = merged.get("person")
    if isinstance(person, dict):
        # "externalId ... not editable", "externalIds ... not writable" (V-code).
        merged["person"] = {
            k: v for k, v in person.items() if k not in ("externalId", "externalIds")
        }
    for key, value in changes.items():
        if key in ("person", "metaData") and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _amount(points: float) -> float:
    if not math.isfinite(points) or points < 0:
        raise RejectedError(f"points must be a finite amount >= 0, not {points!r}")
    return points


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


def _identity(body: Any) -> Any:
    return body


def _ignore(_body: Any) -> None:
    """For calls whose success body carries nothing we use."""
