"""Presets: each sender's documented signing, delivery and default mapping, as an AdapterSpec.

Sources: /work/shared/reference/sources.md (section numbers below). Facts marked U there are
settings here (every key can be replaced on the source, see README "Sources"), and are
listed per vendor in the README. Canonical types: customer.created, customer.updated,
order.completed, order.refunded, membership.expired, membership.renewed.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from worker.inbound.sources.spec import AdapterSpec

CUSTOMER = ("customer.created", "customer.updated")


def _route(on: str | list[str], type_: str | None = None, **extra: Any) -> dict[str, Any]:
    route: dict[str, Any] = {"on": [on] if isinstance(on, str) else on, **extra}
    if type_ is not None:
        route["type"] = type_
    return route


def _s(expr: str) -> dict[str, Any]:
    """An id read as a string (64-bit ids never pass through a float)."""
    return _t(expr, "string")


def _t(expr: str, *transforms: str) -> dict[str, Any]:
    return {"expr": expr, "transform": list(transforms)}


# --- Shopify (§1): base64 HMAC-SHA256 of the raw body, client secret; no timestamp -----------
_SHOPIFY_CUSTOMER = {
    "customer_id": _s("event.id"),
    "email": "event.email",
    "first_name": "event.first_name",
    "last_name": "event.last_name",
    "occurred_at": "event.updated_at ?? event.created_at",
    "attributes": {
        "phone": "event.phone",
        "tags": "event.tags",
        "orders_count": "event.orders_count",
        "total_spent": _t("event.total_spent", "number"),
        "state": "event.state",
    },
}
_SHOPIFY_ORDER = {
    "customer_id": _s("event.customer.id"),
    "email": "event.customer.email ?? event.email",
    "first_name": "event.customer.first_name",
    "last_name": "event.customer.last_name",
    "occurred_at": "event.processed_at ?? event.updated_at ?? event.created_at",
    "attributes": {"orders_count": "event.customer.orders_count"},
    "data": {
        "order_id": _s("event.id"),
        "order_number": "event.order_number",
        "total": _t("event.total_price", "number"),
        "currency": "event.currency",
        "financial_status": "event.financial_status",
        "source_name": "event.source_name",
    },
}
SHOPIFY: dict[str, Any] = {
    "verify": [
        {
            "scheme": "hmac",
            "hmac": {
                "algorithm": "sha256",
                "message": "{body}",
                # "Events webhooks" send the same headers without the X- prefix (C).
                "header": ["X-Shopify-Hmac-Sha256", "Shopify-Hmac-Sha256"],
                "encoding": "base64",
            },
        }
    ],
    "event_type": "headers.x_shopify_topic ?? headers.shopify_topic",
    # Event-Id names the event (the same across retries and subscriptions), Webhook-Id the
    # delivery; keyed with the topic (§1b).
    "delivery_id": {
        "template": "{headers.x_shopify_event_id ?? headers.shopify_event_id"
        " ?? headers.x_shopify_webhook_id ?? headers.shopify_webhook_id}:{sender_type}"
    },
    "routes": [
        # "Send test notification" posts a fixed sample (customer 115310627314723954):
        # ignored when params.ignore_samples is "true".
        _route(
            "*",
            ignore="Shopify's sample payload (test notification)",
            when='config.ignore_samples == "true" and (event.id == 115310627314723954'
            " or event.customer.id == 115310627314723954)",
        ),
        _route("customers/create", "customer.created", map=_SHOPIFY_CUSTOMER),
        _route("customers/update", "customer.updated", map=_SHOPIFY_CUSTOMER),
        _route("orders/paid", "order.completed", map=_SHOPIFY_ORDER),
        _route(
            "orders/updated",
            "order.refunded",
            when='event.financial_status in ["refunded", "partially_refunded"]',
            map=_SHOPIFY_ORDER,
            delivery_id={"template": "shopify-refund:{event.id}:{event.financial_status}"},
        ),
        _route(
            "refunds/create",
            ignore="refunds/create carries no customer; subscribe to orders/updated instead",
        ),
        # Subscription apps (§1c, payload U): a cancelled or expired contract ends membership.
        _route(
            ["subscription_contracts/cancel", "subscription_contracts/expire"],
            "membership.expired",
            map={"customer_id": _s("event.customer_id"), "data": {"contract_id": _s("event.id")}},
        ),
        _route(
            "subscription_contracts/activate",
            "membership.renewed",
            map={"customer_id": _s("event.customer_id"), "data": {"contract_id": _s("event.id")}},
        ),
    ],
    # Shopify POS: a paid order from the POS channel is a visit of the customer's pass.
    "scan_routes": [
        _route(
            "orders/paid",
            "pos.sale",
            when='event.source_name == "pos"',
            map={
                "customer_id": _s("event.customer.id"),
                "pass_key": "config.pass_key ?? 'loyalty'",
                "location": _s("event.location_id"),
                "amount": _t("event.total_price", "number"),
                "occurred_at": "event.processed_at ?? event.created_at",
            },
        )
    ],
}

# --- Stripe (§2): Stripe-Signature t=..,v1=.. hex HMAC-SHA256 of "t.body", 300 s -----------
_STRIPE_CUSTOMER = {
    "customer_id": "event.data.object.id",
    "email": "event.data.object.email",
    # Stripe has one `name` field: the first word is the first name, the rest the last.
    "first_name": _t("event.data.object.name", "first_word"),
    "last_name": _t("event.data.object.name", "last_words"),
    "attributes": {"*": "event.data.object.metadata", "phone": "event.data.object.phone"},
}
_STRIPE_OBJECT_CUSTOMER = {"customer_id": "event.data.object.customer"}
STRIPE: dict[str, Any] = {
    "verify": [
        {
            "scheme": "hmac",
            "hmac": {
                "algorithm": "sha256",
                "message": "{param:t}.{body}",
                "header": "Stripe-Signature",
                "format": "params",
                "scheme": "v1",
                "encoding": "hex",
            },
            "timestamp": {"param": "t", "unit": "s", "tolerance_seconds": 300},
        }
    ],
    "event_type": "event.type",
    "delivery_id": "event.id",
    "map": {"occurred_at": _t("event.created", "unix_s")},
    "routes": [
        _route(
            "*",
            ignore="a test-mode event (livemode false)",
            when='config.ignore_test_mode == "true" and event.livemode == false',
        ),
        _route("customer.created", "customer.created", map=_STRIPE_CUSTOMER),
        _route("customer.updated", "customer.updated", map=_STRIPE_CUSTOMER),
        _route(
            "checkout.session.completed",
            "order.completed",
            when='event.data.object.payment_status == "paid"',
            map={
                **_STRIPE_OBJECT_CUSTOMER,
                "email": "event.data.object.customer_details.email",
                "data": {
                    "checkout_session": "event.data.object.id",
                    "total": _t("event.data.object.amount_total", "cents"),
                    "currency": "event.data.object.currency",
                },
            },
        ),
        _route(
            "invoice.paid",
            "order.completed",
            map={
                **_STRIPE_OBJECT_CUSTOMER,
                "email": "event.data.object.customer_email",
                "first_name": {
                    "expr": "event.data.object.customer_name",
                    "transform": ["first_word"],
                },
                "last_name": {
                    "expr": "event.data.object.customer_name",
                    "transform": ["last_words"],
                },
                "data": {
                    "invoice": "event.data.object.id",
                    "subscription": "event.data.object.subscription",
                    "total": _t("event.data.object.amount_paid", "cents"),
                    "currency": "event.data.object.currency",
                },
            },
        ),
        _route(
            "charge.refunded",
            "order.refunded",
            map={
                **_STRIPE_OBJECT_CUSTOMER,
                "data": {
                    "charge": "event.data.object.id",
                    "refunded": {
                        "expr": "event.data.object.amount_refunded",
                        "transform": ["cents"],
                    },
                    "currency": "event.data.object.currency",
                },
            },
        ),
        _route(
            "customer.subscription.deleted",
            "membership.expired",
            map={
                **_STRIPE_OBJECT_CUSTOMER,
                "data": {
                    "subscription": "event.data.object.id",
                    "status": "event.data.object.status",
                },
            },
        ),
    ],
}

# --- HubSpot (§3): v3 base64 HMAC-SHA256 of method+URI+body+timestamp(ms), 5 min ----------
_HUBSPOT_TS = "X-HubSpot-Request-Timestamp"
_HUBSPOT_CONTACT = {
    "customer_id": _s("event.objectId"),
    "attributes": {"portal_id": "event.portalId"},
}
_HUBSPOT_CHANGE = {
    "customer_id": _s("event.objectId"),
    # The changed property becomes an attribute of that name (`tier` -> customer.attributes.tier).
    "attributes": {"portal_id": "event.portalId", "{event.propertyName}": "event.propertyValue"},
    "data": {"property": "event.propertyName", "value": "event.propertyValue"},
}
HUBSPOT: dict[str, Any] = {
    "verify": [
        {
            "scheme": "hmac",
            "hmac": {
                "algorithm": "sha256",
                "message": "{method}{url}{body}{header:" + _HUBSPOT_TS + "}",
                "header": "X-HubSpot-Signature-v3",
                "encoding": "base64",
                "url_decode": "hubspot",
            },
            "timestamp": {"header": _HUBSPOT_TS, "unit": "ms", "tolerance_seconds": 300},
        },
        # Older signatures, still sent alongside (HubSpot's request-validation docs): v1 =
        # sha256(secret + body), v2 = sha256(secret + method + URI + body), hex; no timestamp,
        # so a replay is only caught as a duplicate.
        {
            "scheme": "hmac",
            "hmac": {
                "mode": "digest",
                "message": "{secret}{body}",
                "header": "X-HubSpot-Signature",
                "encoding": "hex",
                "version_header": "X-HubSpot-Signature-Version",
                "version": "v1",
            },
        },
        {
            "scheme": "hmac",
            "hmac": {
                "mode": "digest",
                "message": "{secret}{method}{url}{body}",
                "header": "X-HubSpot-Signature",
                "encoding": "hex",
                "version_header": "X-HubSpot-Signature-Version",
                "version": "v2",
            },
        },
    ],
    "split": "$",
    "max_items": 100,
    "event_type": "event.subscriptionType",
    # eventId alone is documented as not unique (§3b).
    "delivery_id": {
        "template": "{event.portalId}:{event.subscriptionId}:{event.objectId}:{event.eventId}"
        ":{event.occurredAt}"
    },
    "map": {"occurred_at": _t("event.occurredAt", "unix_ms")},
    "routes": [
        _route("contact.creation", "customer.created", map=_HUBSPOT_CONTACT),
        _route(
            "contact.propertyChange",
            ignore="the property is a Sensitive-Data property (value REDACTED)",
            when='event.propertyValue == "REDACTED"',
        ),
        _route(
            "contact.propertyChange",
            "customer.updated",
            when='event.propertyName == "email"',
            map={**_HUBSPOT_CHANGE, "email": "event.propertyValue"},
        ),
        _route(
            "contact.propertyChange",
            "customer.updated",
            when='event.propertyName == "firstname"',
            map={**_HUBSPOT_CHANGE, "first_name": "event.propertyValue"},
        ),
        _route(
            "contact.propertyChange",
            "customer.updated",
            when='event.propertyName == "lastname"',
            map={**_HUBSPOT_CHANGE, "last_name": "event.propertyValue"},
        ),
        _route("contact.propertyChange", "customer.updated", map=_HUBSPOT_CHANGE),
        _route(
            "deal.propertyChange",
            ignore="a deal names no contact in the webhook; map deals with a custom source",
        ),
    ],
}

# --- Square (§4): base64 HMAC-SHA256 of notification URL + body; legacy SHA-1 header ---------
_SQUARE_URL_BODY = "{url}{body}"
_SQUARE_CUSTOMER = {
    "customer_id": "event.data.object.customer.id",
    "email": "event.data.object.customer.email_address",
    "first_name": "event.data.object.customer.given_name",
    "last_name": "event.data.object.customer.family_name",
    "occurred_at": "event.data.object.customer.updated_at ?? event.created_at",
    "attributes": {
        "phone": "event.data.object.customer.phone_number",
        "reference_id": "event.data.object.customer.reference_id",
    },
}
_SQUARE_PAYMENT = "event.data.object.payment"
_SQUARE_PAID = 'event.data.object.payment.status == "COMPLETED"'
SQUARE: dict[str, Any] = {
    "verify": [
        {
            "scheme": "hmac",
            "hmac": {
                "message": _SQUARE_URL_BODY,
                "header": "x-square-hmacsha256-signature",
                "encoding": "base64",
            },
        },
        {
            "scheme": "hmac",
            "hmac": {
                "algorithm": "sha1",
                "message": _SQUARE_URL_BODY,
                "header": "x-square-signature",
                "encoding": "base64",
            },
        },
    ],
    "event_type": "event.type",
    "delivery_id": "event.event_id",
    "map": {"occurred_at": "event.created_at"},
    "routes": [
        _route("customer.created", "customer.created", map=_SQUARE_CUSTOMER),
        _route("customer.updated", "customer.updated", map=_SQUARE_CUSTOMER),
        _route(
            ["payment.created", "payment.updated"],
            "order.completed",
            when=_SQUARE_PAID,
            # One event per completed payment, whichever notification reports it first.
            delivery_id={"template": "square-payment:{" + _SQUARE_PAYMENT + ".id}:completed"},
            map={
                "customer_id": _SQUARE_PAYMENT + ".customer_id",
                "data": {
                    "payment": _SQUARE_PAYMENT + ".id",
                    "total": {
                        "expr": _SQUARE_PAYMENT + ".amount_money.amount",
                        "transform": ["cents"],
                    },
                    "currency": _SQUARE_PAYMENT + ".amount_money.currency",
                    "location": _SQUARE_PAYMENT + ".location_id",
                },
            },
        ),
        # Refund and subscription payloads are U (§4c): the customer paths are best guesses.
        _route(
            ["refund.created", "refund.updated"],
            "order.refunded",
            when='event.data.object.refund.status == "COMPLETED"',
            delivery_id={"template": "square-refund:{event.data.object.refund.id}:completed"},
            map={
                "customer_id": "event.data.object.refund.customer_id",
                "data": {"refund": "event.data.object.refund.id"},
            },
        ),
        _route(
            "subscription.updated",
            "membership.expired",
            when='event.data.object.subscription.status in ["CANCELED", "DEACTIVATED"]',
            map={"customer_id": "event.data.object.subscription.customer_id"},
        ),
    ],
    "scan_routes": [
        _route(
            ["payment.created", "payment.updated"],
            "pos.sale",
            when=_SQUARE_PAID,
            delivery_id={"template": "square-payment:{" + _SQUARE_PAYMENT + ".id}"},
            map={
                "customer_id": _SQUARE_PAYMENT + ".customer_id",
                "pass_key": "config.pass_key ?? 'loyalty'",
                "location": _SQUARE_PAYMENT + ".location_id",
                "amount": {
                    "expr": _SQUARE_PAYMENT + ".amount_money.amount",
                    "transform": ["cents"],
                },
                "occurred_at": _SQUARE_PAYMENT + ".updated_at ?? event.created_at",
            },
        )
    ],
}

# --- WooCommerce (§8): base64 HMAC-SHA256 of the raw body, webhook secret; unsigned ping ---
_WOO_ORDER = {
    "customer_id": _s("event.customer_id"),
    "email": "event.billing.email",
    "first_name": "event.billing.first_name",
    "last_name": "event.billing.last_name",
    "data": {
        "order_id": _s("event.id"),
        "total": _t("event.total", "number"),
        "currency": "event.currency",
        "status": "event.status",
    },
}
_WOO_ORDER_TOPICS = ["order.created", "order.updated"]
_WOO_CUSTOMER = {
    "customer_id": _s("event.id"),
    "email": "event.email",
    "first_name": "event.first_name",
    "last_name": "event.last_name",
    "attributes": {"username": "event.username"},
}
WOOCOMMERCE: dict[str, Any] = {
    "verify": [
        {
            "scheme": "hmac",
            "hmac": {"message": "{body}", "header": "X-WC-Webhook-Signature", "encoding": "base64"},
        }
    ],
    "ping": {"form_field": "webhook_id"},
    "event_type": "headers.x_wc_webhook_topic",
    # X-WC-Webhook-ID names the webhook, not the delivery: never a dedup key on its own.
    "delivery_id": {"template": "{headers.x_wc_webhook_delivery_id}:{sender_type}"},
    # WooCommerce's *_gmt dates carry no offset: they are UTC.
    "map": {"occurred_at": "event.date_modified_gmt ?? event.date_created_gmt"},
    "routes": [
        _route("customer.created", "customer.created", map=_WOO_CUSTOMER),
        _route("customer.updated", "customer.updated", map=_WOO_CUSTOMER),
        _route(
            _WOO_ORDER_TOPICS,
            ignore="guest order (customer_id 0): no customer to issue a pass to",
            when="event.customer_id == 0 or event.customer_id == null",
        ),
        # No paid or refund topic: derived from the order's status; one event per order and
        # outcome, whichever notification shows it first.
        _route(
            _WOO_ORDER_TOPICS,
            "order.completed",
            when='event.status in ["processing", "completed"]',
            delivery_id={"template": "woo-order:{event.id}:paid"},
            map={**_WOO_ORDER, "occurred_at": "event.date_paid_gmt ?? event.date_modified_gmt"},
        ),
        _route(
            "order.updated",
            "order.refunded",
            when='event.status == "refunded"',
            delivery_id={"template": "woo-order:{event.id}:refunded"},
            map=_WOO_ORDER,
        ),
        # WooCommerce Subscriptions topics (an extension; U).
        _route(
            ["subscription.updated"],
            "membership.expired",
            when='event.status in ["cancelled", "expired"]',
            map={"customer_id": _s("event.customer_id")},
        ),
    ],
}

# --- Klaviyo (§6): system webhooks signed (hex HMAC-SHA256 of body + timestamp, C/U);
# flow webhooks carry a secret header you add, and the body template from the README. ---
_KLAVIYO_PROFILE = {
    "customer_id": _s("event.profile.id"),
    "email": "event.profile.email",
    "first_name": "event.profile.first_name",
    "last_name": "event.profile.last_name",
    "attributes": {"*": "event.profile.properties"},
    "data": {"*": "event.data"},
}
KLAVIYO: dict[str, Any] = {
    "verify": [
        {
            "scheme": "hmac",
            "hmac": {
                "message": "{body}{header:Klaviyo-Timestamp}",
                "header": "Klaviyo-Signature",
                "encoding": "hex",
            },
            "timestamp": {"header": "Klaviyo-Timestamp", "unit": "auto", "tolerance_seconds": 300},
        },
        {"scheme": "header_token", "token_header": "X-Passsync-Token"},
    ],
    # "If these values do not match ... you should not process the webhook" (§6a).
    "require": [
        "headers.klaviyo_webhook_id == null"
        " or body.meta.klaviyo_webhook_id == headers.klaviyo_webhook_id"
    ],
    "split": "data",
    "event_type": "event.topic",
    "delivery_id": "event.external_id",
    "map": {
        "occurred_at": "event.occurred_at ?? event.payload.attributes.datetime"
        " ?? body.meta.timestamp",
    },
    "routes": [
        _route(topic, topic, map=_KLAVIYO_PROFILE)
        for topic in (
            "customer.created",
            "customer.updated",
            "order.completed",
            "order.refunded",
            "membership.expired",
        )
    ],
}

# --- Lightspeed Retail X-Series (§7): form-encoded, JSON in `payload`; signature U --------
_LS = "event.payload"
LIGHTSPEED: dict[str, Any] = {
    "verify": [{"scheme": "url_token", "token_param": "token"}],
    "decode": {"format": "form_json", "field": "payload"},
    "event_type": "event.type ?? config.type",
    # No event id: the object, its version (the X-Series ordering key) and the type (§7).
    "delivery_id": {"template": "{sender_type}:{" + _LS + ".id}:{" + _LS + ".version}"},
    "map": {"occurred_at": _LS + ".updated_at ?? " + _LS + ".sale_date ?? " + _LS + ".created_at"},
    "routes": [
        _route(
            "customer.update",
            "customer.updated",
            map={
                "customer_id": _s(_LS + ".id"),
                "email": _LS + ".email",
                "first_name": _LS + ".first_name",
                "last_name": _LS + ".last_name",
                "attributes": {
                    "customer_code": _LS + ".customer_code",
                    "loyalty_balance": _t(_LS + ".loyalty_balance", "number"),
                },
            },
        ),
        _route(
            "sale.update",
            "order.completed",
            when=_LS + '.status in ["CLOSED", "ONACCOUNT_CLOSED", "LAYBY_CLOSED"]',
            delivery_id={"template": "lightspeed-sale:{" + _LS + ".id}:closed"},
            map={
                "customer_id": _s(_LS + ".customer_id"),
                "data": {
                    "sale": _s(_LS + ".id"),
                    "total": _t(_LS + ".total_price", "number"),
                    "invoice_number": _LS + ".invoice_number",
                },
            },
        ),
    ],
    "scan_routes": [
        _route(
            "sale.update",
            "pos.sale",
            when=_LS + '.status in ["CLOSED", "ONACCOUNT_CLOSED", "LAYBY_CLOSED"]',
            delivery_id={"template": "lightspeed-sale:{" + _LS + ".id}"},
            map={
                "customer_id": _s(_LS + ".customer_id"),
                "pass_key": "config.pass_key ?? 'loyalty'",
                "location": _s(_LS + ".outlet_id"),
                "amount": _t(_LS + ".total_price", "number"),
                "occurred_at": _LS + ".sale_date ?? " + _LS + ".updated_at",
            },
        )
    ],
}

# --- Pipedrive webhooks v2 (§9): no signature; Basic auth (optional) or a URL token -------
_PD_PERSON = {
    "customer_id": _s("event.data.id"),
    "email": {"expr": "event.data.emails", "first_where": "it.primary == true", "pick": "value"},
    "first_name": "event.data.first_name",
    "last_name": "event.data.last_name",
}
PIPEDRIVE: dict[str, Any] = {
    "verify": [
        # Any user name: the password (the source's secret) is what authenticates.
        {"scheme": "basic_auth"},
        {"scheme": "url_token", "token_param": "token"},
    ],
    "event_type": {"template": "{event.meta.entity}.{event.meta.action}"},
    "delivery_id": "event.meta.id",
    "map": {"occurred_at": "event.meta.timestamp"},
    "routes": [
        _route("person.create", "customer.created", map=_PD_PERSON),
        _route("person.change", "customer.updated", map=_PD_PERSON),
        _route(
            "deal.change",
            "order.completed",
            when='event.data.status == "won" and event.previous.status != null'
            ' and event.previous.status != "won"',
            map={
                "customer_id": _s("event.data.person_id"),
                "data": {
                    "deal": _s("event.data.id"),
                    "total": _t("event.data.value", "number"),
                    "currency": "event.data.currency",
                },
            },
        ),
    ],
}

# --- Salesforce Outbound Messages (§5): SOAP, unsigned; URL token + organization id ------
_SF = "event.sObject"
SALESFORCE: dict[str, Any] = {
    "verify": [{"scheme": "url_token", "token_param": "token"}],
    "require": ["config.organization_id == null or body.OrganizationId == config.organization_id"],
    "decode": "soap",
    "split": "Notification",
    "max_items": 100,
    "event_type": {"expr": _SF + ".xsi_type", "transform": ["strip_prefix:sf:"]},
    "delivery_id": "event.Id",
    "map": {
        "customer_id": _SF + ".Id",
        "email": _SF + ".Email ?? " + _SF + ".PersonEmail",
        "first_name": _SF + ".FirstName",
        "last_name": _SF + ".LastName",
        "occurred_at": _SF + ".LastModifiedDate ?? " + _SF + ".SystemModstamp",
        # Every field the outbound message selects (LoyaltyTier__c, ...) is an attribute.
        "attributes": {"*": _SF},
    },
    # One outbound message fires on create and on update alike: customer.updated.
    "routes": [_route(["Contact", "Lead", "Account"], "customer.updated")],
    "ack": {"status": 200, "body": "soap_ack"},
}

# `custom` starts empty: the source writes verify, routes and map itself.
RAW_PRESETS: dict[str, dict[str, Any]] = {
    "shopify": SHOPIFY,
    "stripe": STRIPE,
    "hubspot": HUBSPOT,
    "square": SQUARE,
    "woocommerce": WOOCOMMERCE,
    "klaviyo": KLAVIYO,
    "lightspeed": LIGHTSPEED,
    "pipedrive": PIPEDRIVE,
    "salesforce": SALESFORCE,
    "custom": {},
}


@cache
def spec_for(kind: str) -> AdapterSpec:
    """The preset of `kind` (empty for custom); KeyError for `standard` or an unknown kind."""
    return AdapterSpec.model_validate(RAW_PRESETS[kind])
