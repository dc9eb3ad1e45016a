"""Outbound events end to end: signed CRM webhooks through the receiver, the engine, the
outbox, and a real local destination over HTTP. SQLite and Postgres (the `db` fixture)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.api.conftest import WRITE_TOKEN
from tests.outbox.conftest import OUT_SECRET, System, customer_event
from tests.outbox.receiver import Receiver
from worker.db import Database
from worker.outbox.models import DeliveryStatus, OutboxAttempt, OutboxDelivery, OutboxEvent
from worker.sync.models import PassMapping


def deliveries(db: Database) -> list[OutboxDelivery]:
    with db.sessions() as session:
        return list(session.scalars(select(OutboxDelivery).order_by(OutboxDelivery.id)))


def attempt_outcomes(db: Database) -> list[tuple[int, str, int | None]]:
    with db.sessions() as session:
        rows = session.scalars(select(OutboxAttempt).order_by(OutboxAttempt.id))
        return [(r.attempt, r.outcome, r.status_code) for r in rows]


def test_new_customer_gets_one_signed_pass_issued_with_the_providers_links(
    system: System, receiver: Receiver
) -> None:
    # given a new customer's first event, accepted by the receiver and applied by the engine
    system.post_event(customer_event("evt-1"))
    system.work()
    # when the outbox is delivered
    run = system.deliver()
    # then the CRM got exactly one request: a verified pass.issued with the provider's links
    assert run.verdicts == {"delivered": 1}
    (got,) = receiver.received
    assert got.verified is True
    assert got.headers["webhook-id"] == got.json["id"]
    assert got.headers["webhook-id"].startswith("msg_")
    (stored,) = system.provider.live()
    body = got.json
    assert body["type"] == "pass.issued"
    assert body["customer_id"] == "cust-1"
    assert body["data"]["pass_id"] == stored.pass_id
    assert body["data"]["links"] == {
        "download_page": f"https://example.test/p/{stored.pass_id}",
        "iphone": f"https://example.test/p/{stored.pass_id}.pkpass",
        "android": f"https://example.test/g/{stored.pass_id}",
    }
    assert (body["data"]["pass_key"], body["data"]["template"]) == ("loyalty", "Loyalty Card")
    assert body["data"]["status"] == "active"
    assert body["data"]["event"]["id"] == "evt-1" and body["data"]["event"]["source"] == "crm"
    assert body["cause"] == f"event:{body['data']['event']['ledger_id']}"
    # and the delivery is recorded as delivered, once, with one log row
    (delivery,) = deliveries(system.db)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)
    assert attempt_outcomes(system.db) == [(1, "delivered", 204)]
    # and a second run sends nothing more
    assert system.deliver().attempts == 0
    assert len(receiver.received) == 1


def test_the_readme_verification_recipe_accepts_a_delivery(
    system: System, receiver: Receiver
) -> None:
    # given a delivered event, verified as the README tells a CRM to (the library's verify)
    system.post_event(customer_event("evt-1"))
    system.work()
    system.deliver()
    (got,) = receiver.received
    event = Webhook(OUT_SECRET).verify(got.body, got.headers)
    assert event["type"] == "pass.issued"
    # and a tampered body is refused
    with pytest.raises(WebhookVerificationError):
        Webhook(OUT_SECRET).verify(got.body.replace(b"cust-1", b"cust-2"), got.headers)


def test_a_wrong_secret_would_not_verify(system: System, receiver: Receiver) -> None:
    # given a receiver that expects another secret (the check the CRM makes must be able to fail)
    receiver.verifier = type(receiver.verifier)(
        ["whsec_" + "b3RoZXItc2VjcmV0LW9mLWF0LWxlYXN0LTMyLWJ5dGVz"], tolerance_seconds=300
    )
    system.post_event(customer_event("evt-1"))
    system.work()
    # when delivered
    system.deliver()
    # then the request arrived but does not verify
    (got,) = receiver.received
    assert got.verified is False


def test_destination_down_for_a_while_is_delivered_once_when_back(
    system: System, receiver: Receiver
) -> None:
    # given the destination is down (its port closed) when the pass is issued
    receiver.stop()
    system.post_event(customer_event("evt-1"))
    system.work()
    # when delivery is attempted: a network error, a retry scheduled in SQL
    assert system.deliver().verdicts == {"retry": 1}
    (delivery,) = deliveries(system.db)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error == "network error: ConnectError"
    # and before the retry is due nothing is attempted
    system.clock.advance(3)  # the first wait is 5 s +/- 20 %
    assert system.deliver().attempts == 0
    # when the destination comes back on the same port and the retry is due
    back = Receiver(OUT_SECRET, port=receiver.port).start()
    try:
        system.clock.advance(10)
        assert system.deliver().verdicts == {"delivered": 1}
        system.clock.advance(10_000)
        assert system.deliver().attempts == 0
        # then it arrived exactly once, signed
        assert [(r.type, r.verified) for r in back.received] == [("pass.issued", True)]
    finally:
        back.stop()
    assert attempt_outcomes(system.db) == [(1, "retry", None), (2, "delivered", 204)]


def test_410_disables_the_destination_and_reports_it(system: System, receiver: Receiver) -> None:
    # given two customers' passes and a destination that answers 410 Gone
    receiver.default_status = 410
    system.post_event(customer_event("evt-1", "cust-1"), msg_id="m1")
    system.post_event(customer_event("evt-2", "cust-2"), msg_id="m2")
    system.work()
    # when delivering
    run = system.deliver()
    # then the batch in flight disabled the destination and nothing more was sent to it
    assert run.verdicts == {"disabled": 2}
    assert len(receiver.received) == 2
    system.clock.advance(100_000)
    assert system.deliver().attempts == 0
    assert len(receiver.received) == 2
    # and the admin API reports it, with both deliveries still waiting
    states = system.api("GET", "/api/outbox").json()["destinations"]
    assert [(s["name"], s["enabled"], s["disabled_reason"]) for s in states] == [
        ("crm", False, "answered 410 Gone")
    ]
    assert states[0]["deliveries"]["pending"] == 2
    # when the CRM is back and an operator re-enables it
    receiver.default_status = 204
    answer = system.api("POST", "/api/outbox/destinations/crm/redeliver", WRITE_TOKEN)
    assert answer.status_code == 202
    assert answer.json() == {"destination": "crm", "re_enabled": True, "pending": 0}
    # then both events are delivered
    assert system.deliver().verdicts == {"delivered": 2}
    assert sorted(r.json["customer_id"] for r in receiver.received[2:]) == ["cust-1", "cust-2"]


def test_a_crash_between_the_change_and_the_delivery_still_delivers(
    system: System, receiver: Receiver
) -> None:
    # given the change is committed (the outbox row with it) and the worker dies before any
    # delivery run: no kick, no task
    system.post_event(customer_event("evt-1"))
    system.work()
    with system.db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 1
    assert receiver.received == []
    # when a fresh process (new database connections, new HTTP client) runs the delivery
    fresh = Database(system.db.url)
    try:
        restarted = System(system.settings, fresh, system.provider, system.clock)
        run = restarted.deliver()
        restarted.close()
    finally:
        fresh.dispose()
    # then the event is delivered
    assert run.verdicts == {"delivered": 1}
    assert [r.type for r in receiver.received] == ["pass.issued"]


def test_a_worker_dying_mid_delivery_is_redelivered_after_its_lease(
    system: System, receiver: Receiver
) -> None:
    # given a delivery claimed by a worker that died before it could POST (claim committed)
    system.post_event(customer_event("evt-1"))
    system.work()

    class Dies:
        def send(self, claimed: object) -> object:
            raise SystemExit("killed")

    try:
        from worker.outbox.deliver import deliver_due

        deliver_due(system.db, system.settings.outbound, Dies(), now=system.clock)  # type: ignore[arg-type]
    except SystemExit:
        pass
    (delivery,) = deliveries(system.db)
    assert (delivery.status, delivery.attempts) == ("sending", 1)
    # when another run comes before the lease ends, nothing is sent twice
    assert system.deliver().attempts == 0
    # when the lease (30 s) has run out
    system.clock.advance(31)
    # then it is delivered, as attempt 2
    assert system.deliver().verdicts == {"delivered": 1}
    assert [r.type for r in receiver.received] == ["pass.issued"]
    assert attempt_outcomes(system.db) == [(2, "delivered", 204)]


def test_duplicate_inbound_events_still_send_one_pass_issued(
    system: System, receiver: Receiver
) -> None:
    # given the same event delivered three times (twice as duplicates of the ledger) and the
    # same ledger id applied twice (a redelivered task)
    first = system.post_event(customer_event("evt-1"), msg_id="m1")
    again = system.post_event(customer_event("evt-1"), msg_id="m2")
    assert (first["accepted"], again["duplicates"]) == (1, 1)
    system.work()
    with system.db.session() as session:
        from worker.sync.engine import process_event

        assert process_event(session, 1, system.ctx).already_handled is True
    # and a newer update of the same customer
    system.post_event(customer_event("evt-2", minutes=5, tier="silver", type="customer.updated"))
    system.work()
    # when delivered
    system.deliver()
    # then one pass.issued, then one pass.updated, in that order
    assert [r.type for r in receiver.received] == ["pass.issued", "pass.updated"]
    assert receiver.received[0].json["data"]["pass_id"] == system.provider.live()[0].pass_id
    assert all(r.verified for r in receiver.received)


def test_one_customers_events_wait_for_the_earlier_one_others_do_not(
    system: System, receiver: Receiver
) -> None:
    # given cust-1 issued then updated, cust-2 issued; cust-1's first request gets a 503
    receiver.respond = lambda got: (
        503 if len(receiver.received) <= 2 and got.json["customer_id"] == "cust-1" else None
    )
    system.post_event(customer_event("a1", "cust-1"), msg_id="m1")
    system.work()
    system.post_event(
        customer_event("a2", "cust-1", minutes=1, type="customer.updated", tier="x"), msg_id="m2"
    )
    system.post_event(customer_event("b1", "cust-2"), msg_id="m3")
    system.work()
    # when delivering
    run = system.deliver()
    # then cust-1's update was not sent before its issue; cust-2 went through
    assert run.verdicts == {"retry": 1, "delivered": 1}
    assert sorted((r.json["customer_id"], r.type) for r in receiver.received) == [
        ("cust-1", "pass.issued"),
        ("cust-2", "pass.issued"),
    ]
    # when the retry is due: the issue, then (unblocked) the update
    system.clock.advance(10)
    assert system.deliver().verdicts == {"delivered": 2}
    cust1 = [r.type for r in receiver.received if r.json["customer_id"] == "cust-1"]
    assert cust1 == ["pass.issued", "pass.issued", "pass.updated"]


def test_other_4xx_fails_at_once_and_is_not_retried(system: System, receiver: Receiver) -> None:
    receiver.answer(400)
    system.post_event(customer_event("evt-1"))
    system.work()
    assert system.deliver().verdicts == {"failed": 1}
    system.clock.advance(100_000)
    assert system.deliver().attempts == 0
    assert len(receiver.received) == 1
    (delivery,) = deliveries(system.db)
    assert (delivery.status, delivery.last_error) == ("failed", "HTTP 400")


def test_retries_run_out_after_the_schedule(system: System, receiver: Receiver) -> None:
    # given a destination that always answers 500 and a schedule of three waits
    receiver.default_status = 500
    system.post_event(customer_event("evt-1"))
    system.work()
    # when every retry comes due
    verdicts = []
    for _ in range(6):
        verdicts.extend(system.deliver().verdicts.elements())
        system.clock.advance(1000)
    # then 1 + 3 attempts, the last one giving up
    assert verdicts == ["retry", "retry", "retry", "gave_up"]
    assert len(receiver.received) == 4
    (delivery,) = deliveries(system.db)
    assert delivery.status == "failed"
    assert delivery.last_error == "gave up after 4 attempts: HTTP 500"
    # and every attempt carried the same webhook-id (the CRM can deduplicate)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1


def test_429_retry_after_is_honoured(system: System, receiver: Receiver) -> None:
    receiver.answer(429, headers={"Retry-After": "120"})
    system.post_event(customer_event("evt-1"))
    system.work()
    assert system.deliver().verdicts == {"retry": 1}
    system.clock.advance(100)
    assert system.deliver().attempts == 0  # the schedule says ~5 s, the destination 120 s
    system.clock.advance(21)
    assert system.deliver().verdicts == {"delivered": 1}


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    system: System, receiver: Receiver
) -> None:
    elsewhere = Receiver(OUT_SECRET).start()
    try:
        receiver.answer(307, headers={"Location": elsewhere.url})
        system.post_event(customer_event("evt-1"))
        system.work()
        assert system.deliver().verdicts == {"retry": 1}
        assert elsewhere.received == []
    finally:
        elsewhere.stop()
    assert attempt_outcomes(system.db) == [(1, "retry", 307)]


def test_a_slow_destination_times_out_and_is_retried(system: System, receiver: Receiver) -> None:
    receiver.delay_seconds = 1.5  # the timeout is 1 s
    system.post_event(customer_event("evt-1"))
    system.work()
    assert system.deliver().verdicts == {"retry": 1}
    (delivery,) = deliveries(system.db)
    assert delivery.last_error == "timeout"
    receiver.delay_seconds = 0
    system.clock.advance(10)
    assert system.deliver().verdicts == {"delivered": 1}


def test_void_and_delete_are_sent_after_the_issue(
    system: System, receiver: Receiver, settings_for: object
) -> None:
    # given the shipped-style rules: membership.expired voids, ticket.cancelled deletes
    from worker.sync.engine import SyncContext
    from worker.sync.templates import TemplateResolver

    rules = [
        {
            "name": "card",
            "on": ["customer.created"],
            "actions": [
                {
                    "upsert": "loyalty",
                    "template": "Loyalty Card",
                    "fields": {"tier": "customer.attributes.tier"},
                }
            ],
        },
        {"name": "expire", "on": ["membership.expired"], "actions": [{"void": "loyalty"}]},
        {"name": "gone", "on": ["customer.deleted"], "actions": [{"delete": "loyalty"}]},
    ]
    system.settings = system.settings.model_copy(
        update={"sync": system.settings.sync.model_copy(update={"rules": []})}
    )
    from worker.config import SyncSettings

    sync = SyncSettings.model_validate({"rules": rules})
    system.settings = system.settings.model_copy(update={"sync": sync})
    system.ctx = SyncContext(system.settings, system.provider, TemplateResolver(system.provider))
    system.post_event(customer_event("e1"), msg_id="m1")
    system.post_event(customer_event("e2", minutes=1, type="membership.expired"), msg_id="m2")
    system.post_event(customer_event("e3", minutes=2, type="customer.deleted"), msg_id="m3")
    system.work()
    system.deliver()
    system.deliver()
    system.deliver()
    kinds = [(r.type, r.json["data"]["status"]) for r in receiver.received]
    assert kinds == [
        ("pass.issued", "active"),
        ("pass.voided", "voided"),
        ("pass.deleted", "deleted"),
    ]
    pass_ids = {r.json["data"]["pass_id"] for r in receiver.received}
    assert len(pass_ids) == 1 and None not in pass_ids
    with system.db.sessions() as session:
        assert session.scalar(select(PassMapping.status)) == "deleted"
