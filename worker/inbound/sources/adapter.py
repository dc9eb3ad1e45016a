"""A compiled source adapter: verified bytes in, canonical events / scans / ignored items out.

Pure domain code (no HTTP framework, no database): the receiver (worker/api/sources.py) and
`passsync sources test` call the same methods, so an offline test of a captured request
gives exactly the receiver's verdict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from defusedxml import ElementTree
from pydantic import ValidationError

from worker.bounds import JsonBoundsError, check_json
from worker.config import SourceSettings
from worker.expressions import truthy
from worker.inbound.ledger import IgnoredEvent
from worker.inbound.schema import CanonicalEvent
from worker.inbound.signatures import SignatureError
from worker.inbound.sources.fields import (
    Doc,
    Field,
    Getter,
    SpecError,
    compile_condition,
    compile_field,
    to_time,
)
from worker.inbound.sources.presets import spec_for
from worker.inbound.sources.spec import AdapterSpec, FieldSpec, MapSpec, RouteSpec
from worker.inbound.sources.verify import Checked, RequestParts, Verifier, header
from worker.scans.schema import ScanIn

MAX_ID_CHARS = 255
MAX_TYPE_CHARS = 128
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
SOAP_ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>"
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse>"
    b"</soapenv:Body></soapenv:Envelope>"
)


class HeaderView(dict[str, str]):
    """The request's headers for expressions, `-` written `_`, looked up case-insensitively
    on demand (a request's dozen headers are not copied for the one or two a source reads)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__()
        self._headers = headers

    def get(self, key: str, default: Any = None) -> Any:
        value = header(self._headers, key.replace("_", "-"))
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)


class RefusedError(Exception):
    """The request is refused with `status` (4xx); nothing of it is stored."""

    def __init__(self, status: int, reason: str | list[dict[str, Any]]) -> None:
        super().__init__(reason if isinstance(reason, str) else "invalid events")
        self.status = status
        self.reason = reason


@dataclass
class Mapped:
    """What one request turned into."""

    events: list[CanonicalEvent]
    scans: list[ScanIn]
    ignored: list[IgnoredEvent]
    ping: bool = False


@dataclass(frozen=True)
class _Route:
    on: frozenset[str]
    when: Getter | None
    type: str | None
    ignore: str | None
    fields: dict[str, Field]
    attributes: Named
    data: Named
    delivery_id: Field | None


_SCALARS = (
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "occurred_at",
    "barcode",
    "pass_id",
    "pass_key",
    "location",
    "amount",
)


class SourceAdapter:
    """One configured source of a non-standard kind, compiled once at start-up."""

    def __init__(self, name: str, settings: SourceSettings) -> None:
        self.name = name
        self.kind = settings.kind
        self.spec: AdapterSpec = merged_spec(settings)
        self.public_url = settings.public_url
        self.params: dict[str, Any] = dict(settings.params)
        where = f"sources.{name}"
        try:
            self.verifier = Verifier(
                self.spec.verify, _secrets(settings), allow_unsigned=settings.allow_unsigned
            )
        except SpecError as exc:
            raise SpecError(f"{where}.verify: {exc}") from None
        if not self.spec.verify:
            raise SpecError(f"{where}: no verify method (set verify, or kind to a preset)")
        self._require = [
            compile_condition(c, f"{where}.require[{n}]") for n, c in enumerate(self.spec.require)
        ]
        self._event_type = _field(self.spec.event_type, f"{where}.event_type")
        self._delivery_id = _field(self.spec.delivery_id, f"{where}.delivery_id")
        scans = self.spec.target == "scans" and self.spec.scan_routes
        routes, label = (
            (self.spec.scan_routes, "scan_routes") if scans else (self.spec.routes, "routes")
        )
        if not routes:
            raise SpecError(f"{where}: no routes (which sender types become which events)")
        self.routes: tuple[RouteSpec, ...] = tuple(routes)
        self._routes = [
            _compile_route(route, self.spec.map, f"{where}.{label}[{n}]")
            for n, route in enumerate(routes)
        ]

    @property
    def signs_url(self) -> bool:
        """Whether a signature covers the request's URL (Square, HubSpot)."""
        return any(m.hmac is not None and "{url}" in m.hmac.message for m in self.spec.verify)

    @property
    def target(self) -> str:
        return self.spec.target

    @property
    def configured(self) -> bool:
        return bool(self.verifier.secrets) or all(m.scheme == "none" for m in self.spec.verify)

    # -- the request --------------------------------------------------------------------------

    def check_headers(self, parts: RequestParts, *, now: float | None = None) -> Checked:
        """Authenticate from the headers alone (before the body); raises SignatureError."""
        return self.verifier.check_headers(parts, ping_allowed=self.spec.ping is not None, now=now)

    def verify_body(self, checked: Checked, parts: RequestParts, body: bytes) -> None:
        """The signature over the raw bytes; raises SignatureError."""
        if checked.method is None and self._is_ping(parts, body):
            return
        if self.public_url:  # the URL the sender signs, not the one a proxy forwarded
            parts = replace(parts, url=self.public_url)
        self.verifier.verify_body(checked, parts, body)

    def map_request(
        self,
        checked: Checked,
        parts: RequestParts,
        body: bytes,
        *,
        received_at: datetime | None = None,
    ) -> Mapped:
        """Decode, check, split, route and map a verified body; raises RefusedError (4xx)."""
        if checked.method is None:
            return Mapped([], [], [], ping=True)  # verify_body let only a ping through
        now = received_at or datetime.now(UTC)
        decoded = self._decode(parts, body)
        base: Doc = {
            "body": decoded,
            "headers": HeaderView(parts.headers),
            "query": dict(parts.query),
            "config": self.params,
        }
        for condition, source in zip(self._require, self.spec.require, strict=True):
            if not truthy(condition({**base, "event": decoded})):
                raise SignatureError(f"request does not meet the source's check {source!r}")
        items = self._split(decoded)
        out = Mapped([], [], [])
        for item in items:
            self._map_item({**base, "event": item}, item, body, len(items), now, out)
        return out

    def answer(self) -> tuple[int, str, bytes | None]:
        """(status, content type, body) for an accepted request; None body: the JSON counts."""
        ack = self.spec.ack
        if ack.body == "soap_ack":
            return ack.status, "text/xml; charset=utf-8", SOAP_ACK
        if ack.body == "empty":
            return ack.status, "text/plain", b""
        return ack.status, "application/json", None

    # -- steps --------------------------------------------------------------------------------

    def _is_ping(self, parts: RequestParts, body: bytes) -> bool:
        ping = self.spec.ping
        if ping is None:
            return False
        kind = (header(parts.headers, "content-type") or "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return False
        try:
            fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return False
        return [k for k, _ in fields] == [ping.form_field]

    def _decode(self, parts: RequestParts, body: bytes) -> Any:
        fmt = self.spec.decode.format
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            _refuse(400, "body is not UTF-8")
        if fmt == "json":
            return _json(text)
        if fmt == "soap":
            return _soap(text)
        form = _form(text)
        if fmt == "form":
            return form
        field = self.spec.decode.field
        if not isinstance(form.get(field), str):
            _refuse(400, f"form field {field!r} is missing")
        return {**form, field: _json(form[field])}

    def _split(self, decoded: Any) -> list[Any]:
        path = self.spec.split
        if path is None:
            if not isinstance(decoded, dict):
                _refuse(400, "body must be a JSON object")
            return [decoded]
        found = decoded if path == "$" else _lookup(decoded, path)
        if isinstance(found, dict) and self.spec.decode.format == "soap":
            found = [found]  # one XML element where several may stand
        if not isinstance(found, list):
            _refuse(400, f"body has no list of events at {path!r}")
        if len(found) > self.spec.max_items:
            error = {"loc": ["body"], "msg": f"at most {self.spec.max_items}", "type": "too_long"}
            _refuse(422, [error])
        return found

    def _map_item(  # noqa: PLR0917 - private, one call site
        self,
        doc: Doc,
        item: Any,
        body: bytes,
        count: int,
        now: datetime,
        out: Mapped,
    ) -> None:
        sender_type = _text(self._event_type.value(doc)) if self._event_type else ""
        doc["sender_type"] = sender_type
        route = self._route(sender_type, doc)
        own_id = route.delivery_id if isinstance(route, _Route) else None
        event_id = self._event_id(own_id or self._delivery_id, doc, item, body, count)
        if isinstance(route, str):
            out.ignored.append(self._ignored(event_id, sender_type, route, doc, item, now))
            return
        if route.ignore is not None:
            out.ignored.append(self._ignored(event_id, sender_type, route.ignore, doc, item, now))
            return
        values = {name: field.value(doc) for name, field in route.fields.items()}
        occurred = to_time(values.get("occurred_at")) or now
        attributes = _attributes(route.attributes, doc)
        try:
            if self.spec.target == "scans":
                out.scans.append(_scan(event_id, occurred, values, attributes))
            else:
                out.events.append(_event(event_id, route, occurred, values, attributes, doc))
        except (ValidationError, ValueError) as exc:
            reason = f"{route.type}: {_first_error(exc)}"
            out.ignored.append(self._ignored(event_id, sender_type, reason, doc, item, now))

    def _event_id(self, field: Field | None, doc: Doc, item: Any, body: bytes, count: int) -> str:
        value = _text(field.value(doc)) if field else ""
        if not value:
            # No delivery id: the content itself (a redelivery carries the same bytes).
            raw = body if count == 1 else json.dumps(item, sort_keys=True).encode()
            value = "sha256:" + hashlib.sha256(raw).hexdigest()
        if len(value) > MAX_ID_CHARS:
            value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
        return value

    def _route(self, sender_type: str, doc: Doc) -> _Route | str:
        for route in self._routes:
            if sender_type not in route.on and "*" not in route.on:
                continue
            if route.when is None or truthy(route.when(doc)):
                return route
        if not sender_type:
            return "the request names no event type"
        if any(sender_type in route.on for route in self._routes):
            return f"{sender_type!r} does not meet the conditions of its routes"
        return f"event type {sender_type!r} is not mapped by source {self.name}"

    def _ignored(  # noqa: PLR0917 - private
        self, event_id: str, sender_type: str, reason: str, doc: Doc, item: Any, now: datetime
    ) -> IgnoredEvent:
        payload: dict[str, Any] = {"reason": reason, "sender_type": sender_type}
        try:
            # Kept for the operator, unless the database could not store it (NUL, depth).
            payload["event"] = check_json(item)
        except JsonBoundsError as exc:
            payload["event_not_kept"] = str(exc)
        return IgnoredEvent(
            event_id=event_id,
            sender_type=(sender_type or "unknown")[:MAX_TYPE_CHARS],
            reason=reason,
            occurred_at=now,
            payload=payload,
        )


def merged_spec(settings: SourceSettings) -> AdapterSpec:
    """The kind's preset with every adapter key the source sets in its place."""
    base = spec_for(settings.kind)
    overrides = {
        name: getattr(settings, name)
        for name in AdapterSpec.model_fields
        if getattr(settings, name, None) is not None
    }
    return base.model_copy(update=overrides) if overrides else base


def _secrets(settings: SourceSettings) -> list[str]:
    if settings.secret is None or not settings.secret.get_secret_value().strip():
        return []
    secrets = [settings.secret.get_secret_value().strip()]
    if settings.previous_secrets is not None:
        secrets.extend(settings.previous_secrets.get_secret_value().split())
    return secrets


def _field(spec: FieldSpec | None, where: str) -> Field | None:
    return None if spec is None else compile_field(spec, where)


def _compile_route(route: RouteSpec, defaults: MapSpec, where: str) -> _Route:
    fields: dict[str, Field] = {}
    for name in _SCALARS:
        spec = getattr(route.map, name) or getattr(defaults, name)
        if spec is not None:
            fields[name] = compile_field(spec, f"{where}.map.{name}")
    attributes = _named({**defaults.attributes, **route.map.attributes}, f"{where}.map.attributes")
    data = _named({**defaults.data, **route.map.data}, f"{where}.map.data")
    when = compile_condition(route.when, f"{where}.when") if route.when else None
    delivery_id = _field(route.delivery_id, f"{where}.delivery_id")
    return _Route(
        frozenset(route.on), when, route.type, route.ignore, fields, attributes, data, delivery_id
    )


Named = tuple[tuple[str | Field, Field], ...]


def _named(specs: Mapping[str, FieldSpec], where: str) -> Named:
    """Attribute or data fields; a name with `{holes}` is a template read per event."""
    return tuple(
        (
            compile_field(FieldSpec(template=key), f"{where} name") if "{" in key else key,
            compile_field(spec, f"{where}.{key}"),
        )
        for key, spec in specs.items()
    )


def _attributes(fields: Named, doc: Doc) -> dict[str, Any]:
    """Mapped attributes (or data) without nulls; `*` merges an object's keys under the
    named ones; a templated name that renders empty is left out."""
    values: dict[str, Any] = {}
    spread: Any = None
    for name, field in fields:
        value = field.value(doc)
        if value is None:
            continue
        if name == "*":
            spread = value
            continue
        key = name if isinstance(name, str) else _text(name.value(doc))
        if key:
            values[key] = value
    if isinstance(spread, dict):
        return {**{k: v for k, v in spread.items() if v is not None}, **values}
    return values


def _event(  # noqa: PLR0917 - private, one call site
    event_id: str,
    route: _Route,
    occurred: datetime,
    values: dict[str, Any],
    attributes: dict[str, Any],
    doc: Doc,
) -> CanonicalEvent:
    customer_id = _text(values.get("customer_id"))
    if not customer_id:
        raise ValueError("no customer id in the payload")
    customer = {
        "id": customer_id,
        "email": _text(values.get("email")) or None,
        "first_name": _text(values.get("first_name")) or None,
        "last_name": _text(values.get("last_name")) or None,
        "attributes": attributes,
    }
    return CanonicalEvent.model_validate(
        {
            "id": event_id,
            "type": route.type,
            "occurred_at": occurred,
            "customer": customer,
            "data": _attributes(route.data, doc),
        }
    )


def _scan(
    event_id: str, occurred: datetime, values: dict[str, Any], attributes: dict[str, Any]
) -> ScanIn:
    amount = values.get("amount")
    return ScanIn.model_validate(
        {
            "id": event_id,
            "scanned_at": occurred,
            "barcode": _text(values.get("barcode")) or None,
            "pass_id": _text(values.get("pass_id")) or None,
            "customer_id": _text(values.get("customer_id")) or None,
            "pass_key": _text(values.get("pass_key")) or None,
            "location": _text(values.get("location")) or None,
            "amount": amount if isinstance(amount, int | float) else None,
            "attributes": attributes,
        }
    )


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']}" if where else str(error["msg"])
    return str(exc)


def _text(value: Any) -> str:
    if type(value) is str and value.isascii() and "\x00" not in value:
        return value  # the common case, first
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    if "\x00" in text or not text.isascii():
        # What no database column takes: NUL, and lone surrogates (not encodable as UTF-8).
        text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text


def _lookup(doc: Any, path: str) -> Any:
    node = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _refuse(status: int, reason: str | list[dict[str, Any]]) -> NoReturn:
    raise RefusedError(status, reason)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _json(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError):
        _refuse(400, "body is not valid JSON")


def _form(text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        _refuse(400, "body is not a valid form")
    return dict(pairs)


def _soap(text: str) -> Any:
    """The first element inside the SOAP Body, as nested dicts keyed by local names."""
    try:
        root = ElementTree.fromstring(text)
    except Exception:  # defusedxml raises ParseError and its own refusals (entities, DTDs)
        _refuse(400, "body is not valid XML")
    body = next((child for child in root if _local(child.tag) == "Body"), None)
    if _local(root.tag) != "Envelope" or body is None or len(body) == 0:
        _refuse(400, "body is not a SOAP envelope with a Body")
    return _element(body[0])


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _element(node: Any) -> Any:
    if node.get(_XSI_NIL) == "true":
        return None
    if len(node) == 0:
        return node.text or ""
    out: dict[str, Any] = {}
    kind = node.get(_XSI_TYPE)
    if kind:
        out["xsi_type"] = kind
    for child in node:
        name = _local(child.tag)
        value = _element(child)
        if name in out:
            existing = out[name]
            out[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            out[name] = value
    return out


def build_adapters(sources: Mapping[str, SourceSettings]) -> dict[str, SourceAdapter]:
    """Adapters for every source whose kind is not `standard`; SpecError names the source."""
    return {
        name: SourceAdapter(name, source)
        for name, source in sources.items()
        if source.kind != "standard"
    }


__all__: Sequence[str] = (
    "SOAP_ACK",
    "Mapped",
    "RefusedError",
    "RequestParts",
    "SourceAdapter",
    "SpecError",
    "build_adapters",
)
