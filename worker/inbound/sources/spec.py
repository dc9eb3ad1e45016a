"""The declarative source adapter, as configuration: verify, decode, split, route, map, answer.

A preset (worker/inbound/sources/presets.py) is a value of these models; a `custom` source
writes the same keys in config.yaml, and any key set on a preset source replaces the
preset's. Semantics (expressions, templates, which checks need a secret) are checked when
the adapter is built (worker/inbound/sources/adapter.py), which names the source in errors.

Expressions use the rule language (worker/expressions.py) over one document per event:
`event` (the split item, or the whole body), `body` (the whole decoded body), `headers`
(lower case, `-` written `_`: `headers.x_shopify_topic`), `query`, `config` (the source's
`params`) and `sender_type` (what `event_type` gave).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SourceKind = Literal[
    "standard",
    "shopify",
    "stripe",
    "hubspot",
    "square",
    "woocommerce",
    "klaviyo",
    "lightspeed",
    "pipedrive",
    "salesforce",
    "custom",
]
SOURCE_KINDS: tuple[str, ...] = SourceKind.__args__  # type: ignore[attr-defined]

Transform = str  # see adapter.TRANSFORMS: string, lower, trim, first_word, ... strip_prefix:X


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """One mapped value: an expression or a `{hole}` template, then transforms.

    A template whose holes are all non-empty renders; one with an empty hole is null (so a
    composite id with a missing part falls back to the content hash).

    `first_where` picks the first element of a list value for which the condition holds
    (the element is `it`), and `pick` reads a path inside it (Pipedrive's primary email).
    """

    expr: str | None = None
    template: str | None = None
    first_where: str | None = None
    pick: str | None = None
    transform: list[Transform] = []

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        return {"expr": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        if (self.expr is None) == (self.template is None):
            raise ValueError("give exactly one of expr or template")
        return self


class HmacSpec(_Strict):
    """A keyed signature (or a plain digest over a message containing `{secret}`).

    `message` is a template over `{body}` (the raw bytes), `{method}`, `{url}` (the public
    URL), `{header:Name}`, `{param:name}` (from a `key=value,...` signature header) and
    `{secret}`. Every configured secret is tried (rotation); any signature in the header
    that matches any secret passes, compared in constant time.
    """

    mode: Literal["hmac", "digest"] = "hmac"
    algorithm: Literal["sha1", "sha256", "sha512", "md5"] = "sha256"
    message: str = "{body}"
    # Header names tried in order (the first present is used).
    header: list[str]
    # plain: the header holds one signature; params: `k=v,k=v` (Stripe `t=..,v1=..`).
    format: Literal["plain", "params"] = "plain"
    # params: the key whose values are signatures (several are allowed: rolling secrets).
    scheme: str = "v1"
    prefix: str = ""  # stripped from each signature, e.g. "sha256="
    encoding: Literal["hex", "base64"] = "base64"
    key_encoding: Literal["raw", "base64", "whsec"] = "raw"
    # Decode `{url}` before signing: none, all (every %XX), or hubspot (the twelve characters
    # HubSpot's v3 validation lists: %3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B).
    url_decode: Literal["none", "all", "hubspot"] = "none"
    # Applies only when this header has this value (HubSpot's X-HubSpot-Signature-Version).
    version_header: str | None = None
    version: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_header(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("header"), str):
            data = {**data, "header": [data["header"]]}
        if isinstance(data, dict) and isinstance(data.get("url_decode"), bool):
            data = {**data, "url_decode": "all" if data["url_decode"] else "none"}
        return data


class TimestampSpec(_Strict):
    """The request's own time, checked in both directions before the body is read."""

    header: str | None = None
    param: str | None = None  # a key of the params-format signature header (Stripe `t`)
    unit: Literal["s", "ms", "iso8601", "auto"] = "s"
    tolerance_seconds: int = Field(default=300, ge=1, le=86_400)
    # Seconds a timestamp may be ahead of our clock; none: the same as tolerance_seconds.
    future_seconds: int | None = Field(default=None, ge=0, le=86_400)

    @model_validator(mode="after")
    def _one_place(self) -> TimestampSpec:
        if (self.header is None) == (self.param is None):
            raise ValueError("give exactly one of header or param")
        return self


class VerifySpec(_Strict):
    """How a request proves it comes from the sender; the secret comes from the environment.

    hmac: a signature over a template (see HmacSpec). basic_auth: `Authorization: Basic`
    with the secret as password (and `username`, when set, as the user). url_token: the
    secret in the query parameter `token_param`. header_token: the secret in header
    `token_header` (a flow or campaign webhook whose headers you write yourself). none: no
    check (tests only; refused unless `allow_unsigned` is set on the source).
    """

    scheme: Literal["hmac", "basic_auth", "url_token", "header_token", "none"]
    hmac: HmacSpec | None = None
    timestamp: TimestampSpec | None = None
    username: str | None = None
    token_param: str = "token"  # noqa: S105 - a parameter name, not a secret
    token_header: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> VerifySpec:
        if self.scheme == "hmac" and self.hmac is None:
            raise ValueError("scheme hmac needs `hmac`")
        if self.scheme == "header_token" and not self.token_header:
            raise ValueError("scheme header_token needs `token_header`")
        return self


class DecodeSpec(_Strict):
    """How the verified bytes become data: JSON, a form, JSON in a form field, or SOAP XML."""

    format: Literal["json", "form", "form_json", "soap"] = "json"
    field: str = "payload"  # form_json: the form field that holds the JSON document

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        return {"format": data} if isinstance(data, str) else data


class PingSpec(_Strict):
    """An unsigned set-up request answered 2xx with nothing stored (WooCommerce's ping).

    It matches only a form-encoded body whose only field is `form_field`.
    """

    form_field: str


class MapSpec(_Strict):
    """The canonical event (or scan) built from one item; unset keys keep the source's."""

    customer_id: FieldSpec | None = None
    email: FieldSpec | None = None
    first_name: FieldSpec | None = None
    last_name: FieldSpec | None = None
    occurred_at: FieldSpec | None = None
    attributes: dict[str, FieldSpec] = {}
    data: dict[str, FieldSpec] = {}
    # target: scans
    barcode: FieldSpec | None = None
    pass_id: FieldSpec | None = None
    pass_key: FieldSpec | None = None
    location: FieldSpec | None = None
    amount: FieldSpec | None = None


class RouteSpec(_Strict):
    """Sender types `on` (and the condition `when`) become canonical type `type`.

    `ignore` instead records the event as ignored with that reason (e.g. test payloads).
    """

    on: list[str]
    when: str | None = None
    type: str | None = None
    ignore: str | None = None
    map: MapSpec = MapSpec()
    # The dedup id for this route instead of the source's (e.g. one id per paid order, so
    # a payment seen as created and then updated is one event).
    delivery_id: FieldSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: object) -> object:
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            return {("on" if key is True else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _one_outcome(self) -> RouteSpec:
        if (self.type is None) == (self.ignore is None):
            raise ValueError("a route gives exactly one of type or ignore")
        return self


class AckSpec(_Strict):
    """The answer the sender expects when the request was recorded (or ignored)."""

    status: int = Field(default=200, ge=200, le=299)
    body: Literal["json", "empty", "soap_ack"] = "json"


class AdapterSpec(_Strict):
    """Everything a source kind is; presets fill it, `custom` writes it in config.yaml."""

    verify: list[VerifySpec] = []
    # Conditions that must hold after parsing (else 401): Klaviyo's webhook id in body and
    # header, Salesforce's organization id.
    require: list[str] = []
    ping: PingSpec | None = None
    decode: DecodeSpec = DecodeSpec()
    # A path to the list of events inside the body; "$" when the body is the list; none
    # when the body is one event.
    split: str | None = None
    max_items: int = Field(default=500, ge=1, le=10_000)
    # The sender's event type (routes match it) and the delivery id (dedup, per item).
    event_type: FieldSpec | None = None
    delivery_id: FieldSpec | None = None
    routes: list[RouteSpec] = []
    # target: scans uses these routes when given (a POS sale), else `routes`.
    scan_routes: list[RouteSpec] = []
    # Defaults for every route's map; `attributes: {"*": expr}` merges an object's keys.
    map: MapSpec = MapSpec()
    target: Literal["events", "scans"] = "events"
    ack: AckSpec = AckSpec()
