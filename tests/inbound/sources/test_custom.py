"""`kind: custom`: the whole adapter written in config.yaml, and preset keys replaced."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import pytest

from worker.config import ConfigError, load_settings
from worker.inbound.signatures import SignatureError
from worker.inbound.sources.adapter import SourceAdapter, SpecError, build_adapters

from .senders import adapter, compact, events, run

CONFIG = """
sources:
  loyalty_app:
    kind: custom
    verify:
      - scheme: hmac
        hmac:
          algorithm: sha512
          message: "{header:X-Timestamp}:{method}:{body}"
          header: X-Signature
          prefix: "sha512="
          encoding: hex
        timestamp: {header: X-Timestamp, unit: iso8601, tolerance_seconds: 60}
    event_type: event.kind
    delivery_id: {template: "app-{event.uid}"}
    split: items
    map:
      customer_id: {expr: event.member.number, transform: [string]}
      email: {expr: event.member.mail, transform: [trim, lower]}
      first_name: {expr: event.member.full_name, transform: [first_word]}
      last_name: {expr: event.member.full_name, transform: [last_words]}
      occurred_at: {expr: event.at, transform: [unix_ms]}
      attributes:
        tier: event.member.level ?? "bronze"
        member_since: {expr: event.member.gid, transform: ["strip_prefix:member/"]}
    routes:
      - on: [member.joined]
        type: customer.created
      - on: [member.left]
        when: event.reason != "test"
        type: membership.expired
      - on: [member.left]
        ignore: a test account left
"""
SECRET = "custom-secret-0123456789"


def signed(body: bytes, when: str) -> dict[str, str]:
    mac = hmac.new(SECRET.encode(), f"{when}:POST:".encode() + body, hashlib.sha512).hexdigest()
    return {"X-Signature": f"sha512={mac}", "X-Timestamp": when}


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SourceAdapter:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("PASSSYNC_CONFIG", str(path))
    monkeypatch.setenv("PASSSYNC_SOURCES__LOYALTY_APP__SECRET", SECRET)
    return build_adapters(load_settings().sources)["loyalty_app"]


def test_custom_source_verifies_splits_routes_and_maps(source: SourceAdapter) -> None:
    member = {
        "number": 901,
        "mail": "  Ada@Example.COM ",
        "full_name": "Ada Lovelace",
        "gid": "member/2019",
    }
    body = compact(
        {
            "items": [
                {"uid": "1", "kind": "member.joined", "at": 1795168800000, "member": member},
                {
                    "uid": "2",
                    "kind": "member.left",
                    "reason": "moved",
                    "at": 1795168900000,
                    "member": {**member, "level": "gold"},
                },
                {"uid": "3", "kind": "member.left", "reason": "test", "member": member},
                {"uid": "4", "kind": "member.renamed", "member": member},
            ]
        }
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    mapped = run(source, body, signed(body, now))
    assert events(mapped) == [
        {
            "id": "app-1",
            "type": "customer.created",
            "occurred_at": "2026-11-20T10:00:00Z",
            "customer": {
                "id": "901",
                "email": "ada@example.com",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "attributes": {"tier": "bronze", "member_since": "2019"},
            },
            "data": {},
        },
        {
            "id": "app-2",
            "type": "membership.expired",
            "occurred_at": "2026-11-20T10:01:40Z",
            "customer": {
                "id": "901",
                "email": "ada@example.com",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "attributes": {"tier": "gold", "member_since": "2019"},
            },
            "data": {},
        },
    ]
    assert [(i.event_id, i.reason) for i in mapped.ignored] == [
        ("app-3", "a test account left"),
        ("app-4", "event type 'member.renamed' is not mapped by source loyalty_app"),
    ]


def test_custom_source_refuses_stale_and_unsigned_requests(source: SourceAdapter) -> None:
    body = compact({"items": []})
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    with pytest.raises(SignatureError, match="timestamp too old"):
        run(source, body, signed(body, old))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tampered = signed(body, now)
    tampered["X-Signature"] = tampered["X-Signature"].replace("sha512=", "")
    assert run(source, body, tampered).events == []  # the prefix is optional
    with pytest.raises(SignatureError, match="no matching signature"):
        run(source, compact({"items": [{}]}), signed(body, now))


def test_a_preset_key_set_on_the_source_replaces_the_presets() -> None:
    # Shopify's routes replaced: only customers/create, mapped to a custom type.
    source = adapter(
        "shopify",
        secret="s",
        routes=[
            {
                "on": ["customers/create"],
                "type": "member.enrolled",
                "map": {"customer_id": {"expr": "event.id", "transform": ["string"]}},
            }
        ],
    )
    body = compact({"id": 1, "email": "a@example.com"})
    headers = {
        "X-Shopify-Hmac-Sha256": base64.b64encode(
            hmac.new(b"s", body, hashlib.sha256).digest()
        ).decode(),
        "X-Shopify-Topic": "customers/create",
        "X-Shopify-Event-Id": "e",
    }
    [event] = run(source, body, headers).events
    assert (event.type, event.customer.id) == ("member.enrolled", "1")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "custom", "routes": [{"on": ["a"], "type": "x.y"}]}, "no verify method"),
        ({"kind": "custom", "verify": [{"scheme": "url_token"}]}, "no routes"),
        (
            {
                "kind": "custom",
                "verify": [{"scheme": "none"}],
                "routes": [{"on": ["a"], "type": "x.y"}],
            },
            "allow_unsigned",
        ),
        (
            {"kind": "stripe", "map": {"email": {"expr": "a", "transform": ["shout"]}}},
            "unknown transform 'shout'",
        ),
        (
            {
                "kind": "custom",
                "verify": [{"scheme": "hmac", "hmac": {"header": "X", "message": "{body}{nope}"}}],
                "routes": [{"on": ["a"], "type": "x.y"}],
            },
            "unknown {part}",
        ),
    ],
)
def test_invalid_adapter_settings_name_the_problem(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        adapter(**settings)  # type: ignore[arg-type]


def test_an_unknown_kind_or_a_route_without_outcome_stops_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    monkeypatch.setenv("PASSSYNC_CONFIG", str(path))
    path.write_text("sources:\n  x:\n    kind: zendesk\n")
    with pytest.raises(ConfigError, match=r"sources\.x\.kind"):
        load_settings()
    path.write_text("sources:\n  x:\n    kind: custom\n    routes: [{on: [a]}]\n")
    with pytest.raises(ConfigError, match="exactly one of type or ignore"):
        load_settings()


def test_allow_unsigned_permits_scheme_none() -> None:
    source = adapter(
        "custom",
        allow_unsigned=True,
        verify=[{"scheme": "none"}],
        event_type="event.t",
        routes=[{"on": ["a"], "type": "customer.updated", "map": {"customer_id": "event.c"}}],
    )
    [event] = run(source, compact({"t": "a", "c": "c1"}), {}).events
    assert (event.type, event.customer.id, event.id[:7]) == ("customer.updated", "c1", "sha256:")
