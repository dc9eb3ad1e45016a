"""Presets for HubSpot, Klaviyo, Lightspeed X-Series, Pipedrive and Salesforce."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from worker.inbound.signatures import SignatureError
from worker.inbound.sources.adapter import SOAP_ACK, RefusedError

from .senders import (
    BASE_URL,
    adapter,
    basic,
    compact,
    events,
    hubspot_v3_headers,
    klaviyo_headers,
    run,
)

HUBSPOT_SECRET = "hubspot-client-secret-0123"
HUBSPOT_URL = f"{BASE_URL}/hubspot?portal=62515"
KLAVIYO_SECRET = "klaviyo-webhook-secret-0123456"


# --- HubSpot ---------------------------------------------------------------------------------


def hubspot_event(n: int, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "eventId": 100 + n,
        "subscriptionId": 4242,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1795168800000 + n,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": 1246965,
        "changeSource": "CRM",
        **extra,
    }


def test_hubspot_batch_maps_each_event_with_its_composite_id() -> None:
    body = compact(
        [
            hubspot_event(1, "contact.creation"),
            hubspot_event(
                2, "contact.propertyChange", propertyName="email", propertyValue="ada@example.com"
            ),
            hubspot_event(3, "contact.propertyChange", propertyName="tier", propertyValue="gold"),
            hubspot_event(
                4, "contact.propertyChange", propertyName="ssn", propertyValue="REDACTED"
            ),
            hubspot_event(
                5, "deal.propertyChange", propertyName="dealstage", propertyValue="closedwon"
            ),
            hubspot_event(6, "company.creation"),
        ]
    )
    source = adapter("hubspot", secret=HUBSPOT_SECRET)
    mapped = run(
        source, body, hubspot_v3_headers("POST", HUBSPOT_URL, body, HUBSPOT_SECRET), HUBSPOT_URL
    )
    assert [(e["id"], e["type"], e["customer"]["email"], e["data"]) for e in events(mapped)] == [
        ("62515:4242:1246965:101:1795168800001", "customer.created", None, {}),
        (
            "62515:4242:1246965:102:1795168800002",
            "customer.updated",
            "ada@example.com",
            {"property": "email", "value": "ada@example.com"},
        ),
        (
            "62515:4242:1246965:103:1795168800003",
            "customer.updated",
            None,
            {"property": "tier", "value": "gold"},
        ),
    ]
    assert events(mapped)[0]["occurred_at"] == "2026-11-20T10:00:00.001000Z"
    # The changed property is an attribute of its own name, for rules such as tier changes.
    assert events(mapped)[2]["customer"]["attributes"] == {"portal_id": 62515, "tier": "gold"}
    assert events(mapped)[0]["customer"]["id"] == "1246965"
    assert [i.reason for i in mapped.ignored] == [
        "the property is a Sensitive-Data property (value REDACTED)",
        "a deal names no contact in the webhook; map deals with a custom source",
        "event type 'company.creation' is not mapped by source hubspot",
    ]


def test_hubspot_signature_covers_method_uri_and_millisecond_timestamp() -> None:
    body = compact([hubspot_event(1, "contact.creation")])
    source = adapter("hubspot", secret=HUBSPOT_SECRET)
    now = time.time()
    stale = hubspot_v3_headers("POST", HUBSPOT_URL, body, HUBSPOT_SECRET, int((now - 301) * 1000))
    with pytest.raises(SignatureError, match="timestamp too old"):
        run(source, body, stale, HUBSPOT_URL, now=now)
    in_seconds = hubspot_v3_headers("POST", HUBSPOT_URL, body, HUBSPOT_SECRET, int(now))
    with pytest.raises(SignatureError, match="timestamp too old"):
        run(source, body, in_seconds, HUBSPOT_URL, now=now)
    other_uri = hubspot_v3_headers("POST", f"{BASE_URL}/hubspot", body, HUBSPOT_SECRET)
    with pytest.raises(SignatureError, match="no matching signature"):
        run(source, body, other_uri, HUBSPOT_URL)
    fresh = hubspot_v3_headers("POST", HUBSPOT_URL, body, HUBSPOT_SECRET, int((now - 299) * 1000))
    assert len(run(source, body, fresh, HUBSPOT_URL, now=now).events) == 1


def test_hubspot_v1_signature_is_sha256_of_secret_and_body() -> None:
    body = compact([hubspot_event(1, "contact.creation")])
    digest = hashlib.sha256(HUBSPOT_SECRET.encode() + body).hexdigest()
    headers = {"X-HubSpot-Signature": digest, "X-HubSpot-Signature-Version": "v1"}
    source = adapter("hubspot", secret=HUBSPOT_SECRET)
    assert len(run(source, body, headers, HUBSPOT_URL).events) == 1
    headers["X-HubSpot-Signature-Version"] = "v2"  # a v2 digest covers method and URI too
    with pytest.raises(SignatureError, match="no matching signature"):
        run(source, body, headers, HUBSPOT_URL)


def test_hubspot_v2_signature_matches_the_documented_example() -> None:
    # HubSpot's request-validation page: client secret yyyyyyyy-..., POST, this URI and body.
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    body = b'{"example_field":"example_value"}'
    headers = {
        "X-HubSpot-Signature-Version": "v2",
        "X-HubSpot-Signature": "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900",
    }
    source = adapter(
        "custom",
        secret=secret,
        verify=[v for v in adapter("hubspot").spec.verify if v.hmac and v.hmac.version == "v2"],
        routes=[{"on": ["*"], "ignore": "not mapped here"}],
    )
    mapped = run(source, body, headers, "https://www.example.com/webhook_uri")
    assert [i.reason for i in mapped.ignored] == ["not mapped here"]


def test_hubspot_v3_decodes_only_the_listed_characters_of_the_uri() -> None:
    body = compact([hubspot_event(1, "contact.creation")])
    received = f"{BASE_URL}/hubspot?from=a%3Ab%40c%2Fd&name=x%20y"
    signed_over = f"{BASE_URL}/hubspot?from=a:b@c/d&name=x%20y"
    source = adapter("hubspot", secret=HUBSPOT_SECRET)
    headers = hubspot_v3_headers("POST", signed_over, body, HUBSPOT_SECRET)
    assert len(run(source, body, headers, received).events) == 1
    fully_decoded = hubspot_v3_headers(
        "POST", signed_over.replace("%20", " "), body, HUBSPOT_SECRET
    )
    with pytest.raises(SignatureError, match="no matching signature"):
        run(source, body, fully_decoded, received)


def test_hubspot_batch_over_100_and_a_non_array_body_are_refused() -> None:
    source = adapter("hubspot", secret=HUBSPOT_SECRET)
    big = compact([hubspot_event(n, "contact.creation") for n in range(101)])
    with pytest.raises(RefusedError) as refused:
        run(source, big, hubspot_v3_headers("POST", HUBSPOT_URL, big, HUBSPOT_SECRET), HUBSPOT_URL)
    assert refused.value.status == 422
    one = compact(hubspot_event(1, "contact.creation"))
    with pytest.raises(RefusedError, match="no list of events"):
        run(source, one, hubspot_v3_headers("POST", HUBSPOT_URL, one, HUBSPOT_SECRET), HUBSPOT_URL)


# --- Klaviyo ---------------------------------------------------------------------------------


def klaviyo_body(webhook_id: str = "wh_1") -> bytes:
    return compact(
        {
            "data": [
                {
                    "external_id": "4xYH2g",
                    "topic": "customer.updated",
                    "occurred_at": "2026-11-20T10:00:00+00:00",
                    "profile": {
                        "id": "01GDDKASAP8TKDDA2GRZDSVP4H",
                        "email": "sarah@example.com",
                        "first_name": "Sarah",
                        "last_name": "Mason",
                        "properties": {"tier": "silver"},
                    },
                    "data": {"points": 40},
                },
                {
                    "external_id": "5aaa",
                    "topic": "event:klaviyo.email_delivered",
                    "payload": {"attributes": {"datetime": "2026-11-20T10:00:00+00:00"}},
                },
            ],
            "meta": {
                "klaviyo_account_id": "AbC123",
                "klaviyo_webhook_id": webhook_id,
                "timestamp": "2026-11-20T10:00:01+00:00",
            },
        }
    )


def test_klaviyo_signed_batch_maps_profiles_and_ignores_system_topics() -> None:
    body = klaviyo_body()
    mapped = run(
        adapter("klaviyo", secret=KLAVIYO_SECRET), body, klaviyo_headers(body, KLAVIYO_SECRET)
    )
    assert events(mapped) == [
        {
            "id": "4xYH2g",
            "type": "customer.updated",
            "occurred_at": "2026-11-20T10:00:00Z",
            "customer": {
                "id": "01GDDKASAP8TKDDA2GRZDSVP4H",
                "email": "sarah@example.com",
                "first_name": "Sarah",
                "last_name": "Mason",
                "attributes": {"tier": "silver"},
            },
            "data": {"points": 40},
        }
    ]
    assert [(i.event_id, i.sender_type) for i in mapped.ignored] == [
        ("5aaa", "event:klaviyo.email_delivered")
    ]


def test_klaviyo_webhook_id_mismatch_stale_timestamp_and_bad_signature_are_refused() -> None:
    source = adapter("klaviyo", secret=KLAVIYO_SECRET)
    body = klaviyo_body(webhook_id="wh_other")
    with pytest.raises(SignatureError, match="does not meet the source's check"):
        run(source, body, klaviyo_headers(body, KLAVIYO_SECRET, webhook_id="wh_1"))
    body = klaviyo_body()
    now = time.time()
    with pytest.raises(SignatureError, match="timestamp too old"):
        run(source, body, klaviyo_headers(body, KLAVIYO_SECRET, timestamp=int(now) - 400), now=now)
    with pytest.raises(SignatureError, match="no matching signature"):
        run(source, body, klaviyo_headers(body, "another-secret-0123456"))


def test_klaviyo_flow_webhook_uses_the_secret_header() -> None:
    source = adapter("klaviyo", secret=KLAVIYO_SECRET)
    body = klaviyo_body()
    assert len(run(source, body, {"X-Passsync-Token": KLAVIYO_SECRET}).events) == 1
    with pytest.raises(SignatureError, match="wrong credentials"):
        run(source, body, {"X-Passsync-Token": "nope"})


# --- Lightspeed X-Series ---------------------------------------------------------------------

LS_URL = f"{BASE_URL}/lightspeed?token=ls-token-0123"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def ls_form(kind: str, payload: str) -> bytes:
    return urlencode(
        {"domain_prefix": "demo", "environment": "prod", "type": kind, "payload": payload}
    ).encode()


def test_lightspeed_form_payload_customer_and_closed_sale() -> None:
    source = adapter("lightspeed", secret="ls-token-0123")
    customer = ls_form(
        "customer.update",
        compact(
            {
                "id": "0adfd74a-153e-11e9-fa42-67b5781ba1fb",
                "first_name": "Kim",
                "last_name": "Lee",
                "email": "kim@example.com",
                "customer_code": "KIM-1",
                "loyalty_balance": "12.5",
                "updated_at": "2026-11-20 10:00:00",
                "version": 3,
            }
        ).decode(),
    )
    sale = ls_form(
        "sale.update",
        compact(
            {
                "id": "5b1d6c7a-1111",
                "customer_id": "0adfd74a-153e-11e9-fa42-67b5781ba1fb",
                "status": "CLOSED",
                "total_price": 25.5,
                "invoice_number": "77",
                "outlet_id": "out-1",
                "sale_date": "2026-11-20 10:05:00",
                "version": 9,
            }
        ).decode(),
    )
    [person] = events(run(source, customer, FORM, LS_URL))
    assert person == {
        "id": "customer.update:0adfd74a-153e-11e9-fa42-67b5781ba1fb:3",
        "type": "customer.updated",
        "occurred_at": "2026-11-20T10:00:00Z",
        "customer": {
            "id": "0adfd74a-153e-11e9-fa42-67b5781ba1fb",
            "email": "kim@example.com",
            "first_name": "Kim",
            "last_name": "Lee",
            "attributes": {"customer_code": "KIM-1", "loyalty_balance": 12.5},
        },
        "data": {},
    }
    [order] = events(run(source, sale, FORM, LS_URL))
    assert (order["id"], order["type"], order["data"]) == (
        "lightspeed-sale:5b1d6c7a-1111:closed",
        "order.completed",
        {"sale": "5b1d6c7a-1111", "total": 25.5, "invoice_number": "77"},
    )
    scans = adapter("lightspeed", secret="ls-token-0123", target="scans")
    [scan] = run(scans, sale, FORM, LS_URL).scans
    assert (scan.id, scan.location, scan.amount, scan.pass_key) == (
        "lightspeed-sale:5b1d6c7a-1111",
        "out-1",
        25.5,
        "loyalty",
    )


def test_lightspeed_token_and_form_are_checked() -> None:
    source = adapter("lightspeed", secret="ls-token-0123")
    body = ls_form("customer.update", "{}")
    with pytest.raises(SignatureError, match="missing signature or credentials"):
        run(source, body, FORM, f"{BASE_URL}/lightspeed")
    with pytest.raises(SignatureError, match="wrong credentials"):
        run(source, body, FORM, f"{BASE_URL}/lightspeed?token=guess")
    with pytest.raises(RefusedError, match="body is not valid JSON"):
        run(source, ls_form("customer.update", "{not json"), FORM, LS_URL)
    with pytest.raises(RefusedError, match="form field 'payload' is missing"):
        run(source, b"type=sale.update", FORM, LS_URL)


# --- Pipedrive (webhooks v2) -----------------------------------------------------------------


def pipedrive(entity: str, action: str, data: dict[str, Any], previous: Any = None) -> bytes:
    return compact(
        {
            "meta": {
                "action": action,
                "entity": entity,
                "entity_id": str(data.get("id")),
                "id": f"uuid-{entity}-{action}",
                "company_id": "1",
                "timestamp": "2026-11-20T10:00:00.000Z",
                "version": "2.0",
                "webhook_id": "55",
                "attempt": 1,
            },
            "data": data,
            "previous": previous,
        }
    )


def test_pipedrive_person_with_basic_auth_and_the_primary_email() -> None:
    source = adapter("pipedrive", secret="pd-password")
    body = pipedrive(
        "person",
        "create",
        {
            "id": 42,
            "first_name": "Lin",
            "last_name": "Wu",
            "emails": [
                {"label": "home", "value": "old@example.com", "primary": False},
                {"label": "work", "value": "lin@example.com", "primary": True},
            ],
        },
    )
    [event] = events(run(source, body, basic("passsync", "pd-password")))
    assert (event["id"], event["type"], event["customer"]["id"], event["customer"]["email"]) == (
        "uuid-person-create",
        "customer.created",
        "42",
        "lin@example.com",
    )
    assert len(run(source, body, basic("any-user", "pd-password")).events) == 1
    with pytest.raises(SignatureError, match="wrong credentials"):
        run(source, body, basic("passsync", "wrong"))
    pinned = adapter(
        "pipedrive", secret="pd-password", verify=[{"scheme": "basic_auth", "username": "pd"}]
    )
    assert len(run(pinned, body, basic("pd", "pd-password")).events) == 1
    with pytest.raises(SignatureError, match="wrong credentials"):
        run(pinned, body, basic("someone", "pd-password"))
    with pytest.raises(SignatureError, match="wrong credentials"):
        run(source, body, {"Authorization": "Basic !!notbase64"})


def test_pipedrive_deal_won_once() -> None:
    source = adapter("pipedrive", secret="pd-password")
    deal = {"id": 7, "person_id": 42, "status": "won", "value": 120, "currency": "EUR"}
    won = pipedrive("deal", "change", deal, previous={"status": "open"})
    edit = pipedrive("deal", "change", deal, previous={"value": 100})
    auth = basic("passsync", "pd-password")
    [event] = run(source, won, auth).events
    assert (event.type, event.customer.id, event.data) == (
        "order.completed",
        "42",
        {"deal": "7", "total": 120, "currency": "EUR"},
    )
    assert run(source, edit, auth).events == []


# --- Salesforce Outbound Messages ------------------------------------------------------------

SF_URL = f"{BASE_URL}/salesforce?token=sf-token"
NOTIFICATION = """
   <Notification>
    <Id>{id}</Id>
    <sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{contact}</sf:Id>
     <sf:Email>{email}</sf:Email>
     <sf:FirstName>Ada</sf:FirstName>
     <sf:LastName>Byron</sf:LastName>
     <sf:Loyalty_Tier__c>gold</sf:Loyalty_Tier__c>
     <sf:LastModifiedDate>2026-11-20T10:00:00.000Z</sf:LastModifiedDate>
    </sObject>
   </Notification>"""


def soap(org: str, *notifications: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k5g000000XXXXAAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://x.my.salesforce.com/services/Soap/c/60.0</EnterpriseUrl>
   <PartnerUrl>https://x.my.salesforce.com/services/Soap/u/60.0</PartnerUrl>{"".join(notifications)}
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>""".encode()


def test_salesforce_notifications_split_and_map_with_every_selected_field() -> None:
    source = adapter("salesforce", secret="sf-token", params={"organization_id": "00DORG"})
    body = soap(
        "00DORG",
        NOTIFICATION.format(id="04l1", contact="0031", email="ada@example.com"),
        NOTIFICATION.format(id="04l2", contact="0032", email="bo@example.com"),
    )
    mapped = run(source, body, {"Content-Type": "text/xml"}, SF_URL)
    assert [(e.id, e.type, e.customer.id, e.customer.email) for e in mapped.events] == [
        ("04l1", "customer.updated", "0031", "ada@example.com"),
        ("04l2", "customer.updated", "0032", "bo@example.com"),
    ]
    assert mapped.events[0].customer.attributes == {
        "xsi_type": "sf:Contact",
        "Id": "0031",
        "Email": "ada@example.com",
        "FirstName": "Ada",
        "LastName": "Byron",
        "Loyalty_Tier__c": "gold",
        "LastModifiedDate": "2026-11-20T10:00:00.000Z",
    }
    assert source.answer() == (200, "text/xml; charset=utf-8", SOAP_ACK)


def test_salesforce_single_notification_other_org_and_hostile_xml() -> None:
    source = adapter("salesforce", secret="sf-token", params={"organization_id": "00DORG"})
    one = soap("00DORG", NOTIFICATION.format(id="04l1", contact="0031", email="a@example.com"))
    assert len(run(source, one, {}, SF_URL).events) == 1
    with pytest.raises(SignatureError, match="does not meet the source's check"):
        run(source, soap("00DOTHER"), {}, SF_URL)
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>'
    )
    for body in (bomb, b"<not-xml", b"<Envelope><Head/></Envelope>"):
        with pytest.raises(RefusedError) as refused:
            run(source, body, {}, SF_URL)
        assert refused.value.status == 400
