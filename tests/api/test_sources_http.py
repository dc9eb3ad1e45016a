"""POST /webhooks/{source} for senders' own formats, through the real receiver, both databases.

Acceptance: a Shopify-signed customers/create and a Stripe-signed customer.created each
become one pass at the (in-memory) provider; the same delivery three times is one ledger row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from tests.inbound.sources.senders import (
    compact,
    hubspot_v3_headers,
    shopify_headers,
    square_headers,
    stripe_headers,
    woo_headers,
)
from worker.api.app import create_app
from worker.config import ConfigError, Settings
from worker.db import Database
from worker.inbound.models import EventStatus
from worker.providers.memory import MemoryProvider
from worker.scans.models import Scan
from worker.sync.engine import Outcome, SyncContext, process_event
from worker.sync.templates import TemplateResolver

from .conftest import BrokerPing, RecordingEnqueue, row_count, rows

SHOPIFY_SECRET = "shpss_http_secret"
STRIPE_SECRET = "whsec_http_secret"
SQUARE_KEY = "square-http-key"
WOO_SECRET = "woo-http-secret"
SALESFORCE_TOKEN = "sf-token-0123456789"
ORG = "00D000000000062EAA"

SOURCES: dict[str, Any] = {
    "shop": {"kind": "shopify", "secret": SHOPIFY_SECRET},
    "billing": {"kind": "stripe", "secret": STRIPE_SECRET},
    "till": {"kind": "square", "secret": SQUARE_KEY, "target": "scans"},
    "woo": {"kind": "woocommerce", "secret": WOO_SECRET},
    "sfdc": {"kind": "salesforce", "secret": SALESFORCE_TOKEN, "params": {"organization_id": ORG}},
    "nosecret": {"kind": "shopify"},
    "hub": {"kind": "hubspot", "secret": "hubspot-http-secret"},
}
CUSTOMER = {
    "id": 115310627314723954,
    "email": "john@example.com",
    "first_name": "John",
    "last_name": "Smith",
    "updated_at": "2026-11-20T10:00:00Z",
}


class Receiver:
    """The receiver with vendor sources, and a worker applying what it enqueues."""

    def __init__(self, client: TestClient, enqueue: RecordingEnqueue, db: Database) -> None:
        self.client, self.enqueue, self.db = client, enqueue, db
        self.provider = MemoryProvider()

    def post(self, source: str, body: bytes, headers: dict[str, str], query: str = "") -> Any:
        return self.client.post(f"/webhooks/{source}{query}", content=body, headers=headers)

    def apply_enqueued(self, settings: Settings) -> list[Outcome]:
        ctx = SyncContext(settings, self.provider, TemplateResolver(self.provider))
        outcomes = []
        for ids in self.enqueue.wait_for(1):
            for ledger_id in ids:
                with self.db.session() as session:
                    result = process_event(session, ledger_id, ctx)
                outcomes += [p.outcome for p in result.passes]
        return outcomes


@pytest.fixture
def vendor_settings(settings_factory: Callable[..., Settings], db: Database) -> Settings:
    return settings_factory(database_url=db.url, sources=SOURCES)


@pytest.fixture
def receiver(
    vendor_settings: Settings, db: Database, enqueue: RecordingEnqueue, broker: BrokerPing
) -> Iterator[Receiver]:
    with TestClient(create_app(vendor_settings, db, enqueue, broker)) as client:
        yield Receiver(client, enqueue, db)


def test_shopify_customers_create_becomes_one_pass(
    receiver: Receiver, vendor_settings: Settings
) -> None:
    body = compact(CUSTOMER)
    answer = receiver.post("shop", body, shopify_headers(body, SHOPIFY_SECRET, "customers/create"))
    assert (answer.status_code, answer.json()) == (
        200,
        {"accepted": 1, "duplicates": 0, "ignored": 0},
    )
    [row] = rows(receiver.db)
    assert (row.source, row.event_id, row.type, row.customer_id, row.status) == (
        "shop",
        "ev-1:customers/create",
        "customer.created",
        "115310627314723954",
        EventStatus.PENDING,
    )
    assert receiver.apply_enqueued(vendor_settings) == [Outcome.CREATED]
    [card] = receiver.provider.live()
    assert card.user_provided_id == "passsync-loyalty-115310627314723954"
    assert card.fields == {"firstName": "John", "lastName": "Smith", "email": "john@example.com"}


def test_stripe_customer_created_becomes_one_pass(
    receiver: Receiver, vendor_settings: Settings
) -> None:
    body = compact(
        {
            "id": "evt_1",
            "object": "event",
            "type": "customer.created",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": "cus_9",
                    "email": "ada@example.com",
                    "name": "Ada King",
                    "metadata": {"tier": "gold"},
                }
            },
        }
    )
    answer = receiver.post("billing", body, stripe_headers(body, STRIPE_SECRET))
    assert (answer.status_code, answer.json()["accepted"]) == (200, 1)
    assert receiver.apply_enqueued(vendor_settings) == [Outcome.CREATED]
    [card] = receiver.provider.live()
    assert card.user_provided_id == "passsync-loyalty-cus_9"
    assert card.fields == {
        "firstName": "Ada",
        "lastName": "King",
        "email": "ada@example.com",
        "tier": "gold",
    }


def test_the_same_delivery_three_times_is_one_ledger_row(receiver: Receiver) -> None:
    body = compact(CUSTOMER)
    answers = [
        receiver.post("shop", body, shopify_headers(body, SHOPIFY_SECRET, "customers/update"))
        for _ in range(3)
    ]
    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"accepted": 1, "duplicates": 0, "ignored": 0}),
        (200, {"accepted": 0, "duplicates": 1, "ignored": 0}),
        (200, {"accepted": 0, "duplicates": 1, "ignored": 0}),
    ]
    assert row_count(receiver.db) == 1
    assert len(receiver.enqueue.wait_for(1)) == 1


@pytest.mark.parametrize(
    ("source", "headers", "status", "detail"),
    [
        (
            "shop",
            lambda b: shopify_headers(b, "wrong", "customers/create"),
            401,
            "no matching signature",
        ),
        (
            "shop",
            lambda b: {"X-Shopify-Topic": "customers/create"},
            401,
            "missing signature or credentials",
        ),
        (
            "nosecret",
            lambda b: shopify_headers(b, SHOPIFY_SECRET, "customers/create"),
            401,
            "no secret configured for this source",
        ),
        (
            "billing",
            lambda b: stripe_headers(b, STRIPE_SECRET, timestamp=int(time.time()) - 900),
            401,
            "timestamp too old",
        ),
    ],
)
def test_refused_requests_store_and_enqueue_nothing(
    receiver: Receiver,
    source: str,
    headers: Callable[[bytes], dict[str, str]],
    status: int,
    detail: str,
) -> None:
    body = compact(CUSTOMER)
    answer = receiver.post(source, body, headers(body))
    assert (answer.status_code, answer.json()) == (status, {"detail": detail})
    assert row_count(receiver.db) == 0
    assert receiver.enqueue.wait_for(0, timeout=0.1) == []


def test_signed_but_malformed_body_is_400_with_nothing_stored(receiver: Receiver) -> None:
    body = b'{"id": 1'
    answer = receiver.post("shop", body, shopify_headers(body, SHOPIFY_SECRET, "customers/create"))
    assert (answer.status_code, answer.json()) == (400, {"detail": "body is not valid JSON"})
    assert row_count(receiver.db) == 0


def test_unmapped_event_is_answered_2xx_and_recorded_as_ignored_once(receiver: Receiver) -> None:
    body = compact({"id": 5, "email": "x@example.com"})
    headers = shopify_headers(body, SHOPIFY_SECRET, "products/create", event_id="p-1")
    answers = [receiver.post("shop", body, headers) for _ in range(2)]
    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"accepted": 0, "duplicates": 0, "ignored": 1}),
    ] * 2
    [row] = rows(receiver.db)
    assert (row.event_id, row.type, row.status, row.last_error, row.customer_id) == (
        "p-1:products/create",
        "products/create",
        EventStatus.IGNORED,
        "event type 'products/create' is not mapped by source shop",
        "",
    )
    assert row.payload["event"] == {"id": 5, "email": "x@example.com"}
    assert receiver.enqueue.wait_for(0, timeout=0.1) == []


def test_a_square_sale_on_a_scans_source_becomes_one_scan(receiver: Receiver) -> None:
    url = "http://testserver/webhooks/till"
    body = compact(
        {
            "type": "payment.updated",
            "event_id": "e-1",
            "created_at": "2026-11-20T10:00:00Z",
            "data": {
                "object": {
                    "payment": {
                        "id": "pay_1",
                        "status": "COMPLETED",
                        "customer_id": "C1",
                        "location_id": "L1",
                        "amount_money": {"amount": 999},
                    }
                }
            },
        }
    )
    headers = square_headers(url, body, SQUARE_KEY)
    answers = [receiver.post("till", body, headers) for _ in range(2)]
    assert [a.json() for a in answers] == [
        {"accepted": 1, "duplicates": 0, "ignored": 0},
        {"accepted": 0, "duplicates": 1, "ignored": 0},
    ]
    with receiver.db.session() as session:
        [scan] = session.scalars(select(Scan)).all()
        assert (scan.source, scan.scan_id, scan.customer_id, scan.pass_key, scan.amount) == (
            "till",
            "square-payment:pay_1",
            "C1",
            "loyalty",
            9.99,
        )
    assert row_count(receiver.db) == 0


def test_woocommerce_ping_is_answered_200_with_nothing_stored(receiver: Receiver) -> None:
    answer = receiver.post(
        "woo", b"webhook_id=3", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (answer.status_code, answer.json()) == (
        200,
        {"accepted": 0, "duplicates": 0, "ignored": 0},
    )
    assert row_count(receiver.db) == 0
    body = compact({"id": 4, "email": "w@example.com", "first_name": "W"})
    signed = receiver.post("woo", body, woo_headers(body, WOO_SECRET, "customer.created"))
    assert signed.json() == {"accepted": 1, "duplicates": 0, "ignored": 0}


SOAP = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k000000000001AAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/60.0/00D</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/60.0/00D</PartnerUrl>
   <Notification>
    <Id>04l000000000001AAA</Id>
    <sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>003000000000001AAA</sf:Id>
     <sf:Email>grace@example.com</sf:Email>
     <sf:FirstName>Grace</sf:FirstName>
     <sf:LastName>Hopper</sf:LastName>
     <sf:LastModifiedDate>2026-11-20T10:00:00.000Z</sf:LastModifiedDate>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""


def test_salesforce_outbound_message_is_acknowledged_in_soap(receiver: Receiver) -> None:
    body = SOAP.format(org=ORG).encode()
    xml = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    answer = receiver.post("sfdc", body, xml, f"?token={SALESFORCE_TOKEN}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/xml; charset=utf-8"
    assert b"<Ack>true</Ack>" in answer.content
    assert b"http://soap.sforce.com/2005/09/outbound" in answer.content
    [row] = rows(receiver.db)
    assert (row.event_id, row.type, row.customer_id) == (
        "04l000000000001AAA",
        "customer.updated",
        "003000000000001AAA",
    )
    other_org = receiver.post(
        "sfdc", SOAP.format(org="00D999").encode(), xml, f"?token={SALESFORCE_TOKEN}"
    )
    no_token = receiver.post("sfdc", body, xml)
    assert [other_org.status_code, no_token.status_code] == [401, 401]
    assert row_count(receiver.db) == 1


def test_a_vendor_source_is_not_a_standard_one(receiver: Receiver) -> None:
    # Standard Webhooks headers do not authenticate a Shopify source, nor scans.
    body = compact(CUSTOMER)
    from tests.api.conftest import signed_headers

    assert receiver.post("shop", body, signed_headers(body)).status_code == 401
    assert receiver.client.post("/scans/shop", content=body).status_code == 404


def test_an_invalid_source_configuration_stops_start_up(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    bad = settings_factory(
        database_url=db.url,
        sources={
            "x": {
                "kind": "custom",
                "verify": [{"scheme": "url_token"}],
                "routes": [{"on": ["a"], "type": "customer.created", "when": "event.a =="}],
            }
        },
    )
    with pytest.raises(ConfigError, match=r"sources\.x\.routes\[0\]\.when"):
        create_app(bad, db, RecordingEnqueue(), BrokerPing())


def test_hostile_but_signed_values_are_ignored_or_refused_never_a_500(receiver: Receiver) -> None:
    # A NUL, a lone surrogate and nesting past the bounds in an unmapped event
    body = b'{"id": "\\u0000x\\ud800", "deep": ' + b"[" * 40 + b"]" * 40 + b"}"
    headers = shopify_headers(body, SHOPIFY_SECRET, "products/create")
    answer = receiver.post("shop", body, headers)
    assert answer.status_code == 200, answer.text
    [row] = rows(receiver.db)
    assert row.status == EventStatus.IGNORED
    assert "event" not in row.payload and "event_not_kept" in row.payload


def test_a_hubspot_batch_records_mapped_and_ignored_items_in_one_answer(receiver: Receiver) -> None:
    url = "http://testserver/webhooks/hub"  # as received: no public_url configured
    now_ms = int(time.time() * 1000)
    items = [
        {
            "eventId": n,
            "subscriptionId": 9,
            "portalId": 62515,
            "occurredAt": now_ms - n,
            "subscriptionType": kind,
            "objectId": 501,
            "attemptNumber": 0,
        }
        for n, kind in enumerate(["contact.creation", "contact.propertyChange", "deal.creation"])
    ]
    items[1] |= {"propertyName": "email", "propertyValue": "kay@example.com"}
    body = compact(items)
    headers = hubspot_v3_headers("POST", url, body, "hubspot-http-secret", now_ms)
    answers = [receiver.post("hub", body, headers) for _ in range(2)]
    assert [a.json() for a in answers] == [
        {"accepted": 2, "duplicates": 0, "ignored": 1},
        {"accepted": 0, "duplicates": 2, "ignored": 1},
    ]
    assert [(r.type, r.status, r.customer_id) for r in rows(receiver.db)] == [
        ("customer.created", EventStatus.PENDING, "501"),
        ("customer.updated", EventStatus.PENDING, "501"),
        ("deal.creation", EventStatus.IGNORED, ""),
    ]


def test_sender_sources_are_counted_in_the_webhook_metrics(receiver: Receiver) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    ok = sample("passsync_webhook_requests_total", source="shop", status="200")
    accepted = sample("passsync_webhook_events_total", source="shop", result="accepted")
    refused = sample("passsync_webhook_rejected_total", source="shop", reason="signature")
    body = compact(CUSTOMER)
    good = shopify_headers(body, SHOPIFY_SECRET, "customers/create", event_id="m-1")
    assert receiver.post("shop", body, good).status_code == 200
    bad = shopify_headers(body, "wrong", "customers/create")
    assert receiver.post("shop", body, bad).status_code == 401
    assert sample("passsync_webhook_requests_total", source="shop", status="200") == ok + 1
    assert sample("passsync_webhook_events_total", source="shop", result="accepted") == (
        accepted + 1
    )
    assert sample("passsync_webhook_rejected_total", source="shop", reason="signature") == (
        refused + 1
    )


def test_a_recorded_scan_is_published_after_its_commit(
    vendor_settings: Settings, db: Database, enqueue: RecordingEnqueue, broker: BrokerPing
) -> None:
    scans_published = RecordingEnqueue()
    app = create_app(vendor_settings, db, enqueue, broker, enqueue_scans=scans_published)
    body = compact(
        {
            "type": "payment.created",
            "event_id": "e-9",
            "created_at": "2026-11-20T10:00:00Z",
            "data": {
                "object": {"payment": {"id": "pay_9", "status": "COMPLETED", "customer_id": "C9"}}
            },
        }
    )
    with TestClient(app) as client:
        headers = square_headers("http://testserver/webhooks/till", body, SQUARE_KEY)
        answer = client.post("/webhooks/till", content=body, headers=headers)
    assert answer.json() == {"accepted": 1, "duplicates": 0, "ignored": 0}
    with db.session() as session:
        [scan_id] = session.scalars(select(Scan.id)).all()
    assert scans_published.calls == [[scan_id]]
    assert enqueue.calls == []


def test_the_documented_route_answers_sender_kinds_like_the_fast_path(
    vendor_settings: Settings, db: Database, enqueue: RecordingEnqueue, broker: BrokerPing
) -> None:
    from fastapi import FastAPI

    from worker.api import webhooks
    from worker.api.context import STATE_KEY

    # An app without the fast path: only FastAPI's routing reaches the route.
    plain = FastAPI()
    plain.include_router(webhooks.router)
    setattr(
        plain.state,
        STATE_KEY,
        getattr(create_app(vendor_settings, db, enqueue, broker).state, STATE_KEY),
    )
    body = compact(CUSTOMER)
    soap = SOAP.format(org=ORG).encode()
    with TestClient(plain) as client:
        shop = client.post(
            "/webhooks/shop",
            content=body,
            headers=shopify_headers(body, SHOPIFY_SECRET, "customers/create"),
        )
        sfdc = client.post(
            f"/webhooks/sfdc?token={SALESFORCE_TOKEN}",
            content=soap,
            headers={"Content-Type": "text/xml"},
        )
        refused = client.post(
            "/webhooks/shop",
            content=body,
            headers=shopify_headers(body, "wrong", "customers/create"),
        )
        paths = client.get("/openapi.json").json()["paths"]
    assert (shop.status_code, shop.json()) == (200, {"accepted": 1, "duplicates": 0, "ignored": 0})
    assert (sfdc.status_code, sfdc.headers["content-type"]) == (200, "text/xml; charset=utf-8")
    assert b"<Ack>true</Ack>" in sfdc.content
    assert (refused.status_code, refused.json()) == (401, {"detail": "no matching signature"})
    assert row_count(db) == 2
    assert {"200", "202", "401"} <= set(paths["/webhooks/{source}"]["post"]["responses"])


def test_no_token_header_or_body_reaches_the_logs(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    soap = SOAP.format(org=ORG).encode()
    xml = {"Content-Type": "text/xml"}
    assert receiver.post("sfdc", soap, xml, "?token=guessed-token-123").status_code == 401
    assert receiver.post("sfdc", soap, xml, f"?token={SALESFORCE_TOKEN}").status_code == 200
    body = compact(CUSTOMER)
    headers = shopify_headers(body, "wrong", "customers/create")
    assert receiver.post("shop", body, headers).status_code == 401
    # The test client's own request log (httpx) is the sender's side, not ours.
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    for secret in (
        "guessed-token-123",
        SALESFORCE_TOKEN,
        headers["X-Shopify-Hmac-Sha256"],
        "grace@example.com",
        "john@example.com",
    ):
        assert secret not in logged
    assert "webhook rejected: source=sfdc status=401" in logged
