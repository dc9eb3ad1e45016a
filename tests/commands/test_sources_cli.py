"""`passsync sources list|test`, and ignored events in `passsync events list`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.inbound.sources.senders import compact, shopify_headers, stripe_headers
from worker.cli import app
from worker.db import Database
from worker.inbound.ledger import IgnoredEvent, record_ignored

CONFIG = """
sources:
  crm: {}
  shop:
    kind: shopify
  billing:
    kind: stripe
"""


@pytest.fixture(autouse=True)
def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("PASSSYNC_CONFIG", str(path))
    monkeypatch.setenv("PASSSYNC_SOURCES__SHOP__SECRET", "shop-secret")
    monkeypatch.setenv("PASSSYNC_SOURCES__BILLING__SECRET", "whsec_billing")


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["sources", *args])


def raw_http(path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        "Host: hooks.example.com",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_list_shows_each_source_with_what_it_maps() -> None:
    result = cli("list", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["sources"]}
    assert sorted(rows) == ["billing", "crm", "shop"]
    assert (rows["crm"]["kind"], rows["crm"]["auth"]) == ("standard", "standard-webhooks")
    assert (rows["crm"]["secret"], rows["shop"]["secret"]) == ("missing", "set")
    assert "shop-secret" not in result.stdout
    assert rows["shop"]["auth"] == "hmac-sha256 X-Shopify-Hmac-Sha256"
    assert rows["shop"]["routes"][1] == {"on": "customers/create", "to": "customer.created"}
    kinds = json.loads(cli("list", "--kinds", "--json").stdout)["sources"]
    assert [(r["kind"], r["target"]) for r in kinds if r["kind"] in ("square", "custom")] == [
        ("square", "events"),
        ("square", "scans"),
        ("custom", "events"),
    ]
    table = cli("list")
    assert table.exit_code == 0 and "customers/create -> customer.created" in table.stdout


def test_test_prints_the_canonical_events_of_a_captured_request(tmp_path: Path) -> None:
    body = compact({"id": 7, "email": "ann@example.com", "first_name": "Ann"})
    capture = tmp_path / "req.http"
    headers = shopify_headers(body, "shop-secret", "customers/create")
    headers["Content-Length"] = str(len(body))
    capture.write_bytes(raw_http("/webhooks/shop", headers, body) + b"\n")
    result = cli("test", "shop", str(capture))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["answer"] == {"status": 200, "content_type": "application/json", "ping": False}
    assert [(e["id"], e["type"], e["customer"]["id"]) for e in out["events"]] == [
        ("ev-1:customers/create", "customer.created", "7")
    ]
    assert out["ignored"] == [] and out["scans"] == []


def test_test_names_the_reason_a_request_would_be_refused(tmp_path: Path) -> None:
    body = compact({"id": 7})
    capture = tmp_path / "req.http"
    capture.write_bytes(
        raw_http("/webhooks/shop", shopify_headers(body, "wrong", "customers/create"), body)
    )
    result = cli("test", "shop", str(capture))
    assert (result.exit_code, result.stderr.strip()) == (1, "refused: 401 no matching signature")
    assert result.stdout == ""


def test_test_checks_old_captures_at_the_time_given(tmp_path: Path) -> None:
    body = compact(
        {"id": "evt_1", "type": "invoice.created", "created": 1795168800, "data": {"object": {}}}
    )
    signed_at = int(time.time()) - 3600
    capture = tmp_path / "req.json"
    capture.write_text(
        json.dumps(
            {
                "method": "POST",
                "url": "https://h.example.com/webhooks/billing",
                "headers": stripe_headers(body, "whsec_billing", timestamp=signed_at),
                "body": body.decode(),
            }
        )
    )
    stale = cli("test", "billing", str(capture))
    assert (stale.exit_code, stale.stderr.strip()) == (1, "refused: 401 timestamp too old")
    then = cli("test", "billing", str(capture), "--now", str(signed_at + 10))
    assert then.exit_code == 0, then.output
    assert json.loads(then.stdout)["ignored"] == [
        {
            "id": "evt_1",
            "sender_type": "invoice.created",
            "reason": "event type 'invoice.created' is not mapped by source billing",
        }
    ]


def test_test_of_an_unknown_source_or_unreadable_file_exits_2(tmp_path: Path) -> None:
    assert cli("test", "nope", str(tmp_path / "x")).exit_code == 2
    bad = tmp_path / "bad.http"
    bad.write_bytes(b"garbage")
    result = cli("test", "shop", str(bad))
    assert result.exit_code == 2 and "no request line" in result.stderr


def test_ignored_events_are_listed_with_their_reason(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    with db.session() as session:
        record_ignored(
            session,
            "shop",
            [
                IgnoredEvent(
                    "p-1:products/create",
                    "products/create",
                    "event type 'products/create' is not mapped by source shop",
                    datetime(2026, 11, 20, tzinfo=UTC),
                    {"event": {"id": 5}},
                )
            ],
        )
    result = CliRunner().invoke(app, ["events", "list", "--status", "ignored", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["events"]
    assert (row["source"], row["event_id"], row["type"], row["status"], row["last_error"]) == (
        "shop",
        "p-1:products/create",
        "products/create",
        "ignored",
        "event type 'products/create' is not mapped by source shop",
    )
