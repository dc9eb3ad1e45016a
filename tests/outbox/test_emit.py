"""emit() is part of the caller's transaction; the dead letter emits event.failed; a commit
that emitted kicks a delivery; destinations get only the types they asked for."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from tests.outbox.conftest import OUT_SECRET, System, customer_event
from tests.outbox.receiver import Receiver
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import EventStatus, InboundEvent
from worker.outbox.emit import EMITTED_KEY, emit
from worker.outbox.models import OutboxDelivery, OutboxEvent
from worker.sync.failures import record_failure


def outbox_count(db: Database) -> int:
    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(OutboxEvent)) or 0


def test_a_rolled_back_change_emits_nothing(db: Database) -> None:
    session = db.sessions()
    emit(session, "pass.updated", {"pass_key": "loyalty"}, "cust-1", "event:1")
    session.flush()
    session.rollback()
    session.close()
    assert outbox_count(db) == 0


def test_emit_refuses_an_unknown_type_and_adds_nothing(db: Database) -> None:
    with db.session() as session:
        with pytest.raises(ValueError, match=r"pass\.exploded"):
            emit(session, "pass.exploded", {}, "cust-1", "event:1")
        assert EMITTED_KEY not in session.info
    assert outbox_count(db) == 0


def test_the_dead_letter_emits_event_failed_with_the_reason(
    system: System, receiver: Receiver
) -> None:
    # given an accepted event
    system.post_event(customer_event("evt-1"))
    system.enqueue.wait_for(1)
    # when a retry is recorded: nothing is emitted
    with system.db.session() as session:
        record_failure(session, 1, "transient: timeout", final=False)
    assert outbox_count(system.db) == 0
    # when the event goes to the dead letter
    with system.db.session() as session:
        record_failure(session, 1, "rejected: template missing", final=True)
    # and again (another delivery of the task): still one event.failed
    with system.db.session() as session:
        record_failure(session, 1, "rejected: template missing", final=True)
    system.deliver()
    # then the CRM hears of it once, with the reason and the inbound event
    (got,) = receiver.received
    assert got.verified and got.type == "event.failed"
    data = got.json["data"]
    assert data["reason"] == "rejected: template missing"
    assert data["attempts"] == 2
    assert (data["event"]["id"], data["event"]["source"], data["event"]["ledger_id"]) == (
        "evt-1",
        "crm",
        1,
    )
    assert got.json["cause"] == "event:1"
    with system.db.sessions() as session:
        assert session.get(InboundEvent, 1).status == EventStatus.DEAD  # type: ignore[union-attr]


def test_a_campaign_recipient_names_its_campaign(db: Database, system: System) -> None:
    with db.session() as session:
        row = InboundEvent(
            source="campaign",
            event_id="12:345:1",
            type="customer.updated",
            customer_id="cust-9",
            occurred_at=system.clock(),
            payload={},
        )
        session.add(row)
        session.flush()
        record_failure(session, row.id, "rejected: nope", final=True)
    with db.sessions() as session:
        event = session.execute(select(OutboxEvent)).scalar_one()
    assert event.cause == "campaign:12"
    assert event.payload["event"]["campaign_id"] == "12"


def test_destinations_get_only_the_types_they_want(
    settings_for: Callable[..., Settings], db: Database, receiver: Receiver, system: System
) -> None:
    # given a second destination that wants only pass.issued
    only_issued = Receiver(OUT_SECRET).start()
    try:
        system.settings = settings_for(
            destinations={
                "crm": {"url": receiver.url, "secret": OUT_SECRET},
                "mailer": {
                    "url": only_issued.url,
                    "secret": OUT_SECRET,
                    "event_types": ["pass.issued"],
                },
            }
        )
        from worker.outbox.transport import HttpTransport

        system.transport = HttpTransport(system.settings.outbound)
        system.post_event(customer_event("e1"), msg_id="m1")
        system.work()  # before e2 arrives (else e2 would ride along in e1's create)
        system.post_event(
            customer_event("e2", minutes=1, type="customer.updated", tier="x"), msg_id="m2"
        )
        system.work()
        system.deliver()
        system.deliver()
        assert [r.type for r in receiver.received] == ["pass.issued", "pass.updated"]
        assert [r.type for r in only_issued.received] == ["pass.issued"]
        # the same event has the same webhook-id at every destination
        assert (
            only_issued.received[0].headers["webhook-id"]
            == receiver.received[0].headers["webhook-id"]
        )
    finally:
        only_issued.stop()


def test_without_destinations_events_are_kept_but_nothing_is_sent(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    from worker.outbox.deliver import deliver_due

    with db.session() as session:
        emit(session, "pass.issued", {}, "cust-1", "event:1")

    class NeverCalled:
        def send(self, claimed: object) -> object:
            raise AssertionError("no destination: nothing to send")

    settings = make_settings()
    run = deliver_due(db, settings.outbound, NeverCalled())  # type: ignore[arg-type]
    assert (run.fanned_out, run.attempts) == (1, 0)
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxDelivery)) == 0


def test_a_commit_that_emitted_kicks_one_delivery(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.tasks import outbox as outbox_tasks

    kicks: list[dict[str, object]] = []
    monkeypatch.setattr(outbox_tasks.deliver_outbox, "apply_async", lambda **kw: kicks.append(kw))
    monkeypatch.setattr(outbox_tasks, "_last_kick", [0.0])
    outbox_tasks.enable_kicks()
    # a commit without an outbound event kicks nothing
    with db.session() as session:
        session.execute(select(func.count()).select_from(OutboxEvent))
    assert kicks == []
    # a rolled back emit kicks nothing
    session = db.sessions()
    emit(session, "pass.updated", {}, "cust-1", "event:1")
    session.rollback()
    session.commit()
    session.close()
    assert kicks == []
    # a committed emit kicks once, shortly after
    with db.session() as session:
        emit(session, "pass.updated", {}, "cust-1", "event:1")
    assert kicks == [{"queue": "realtime", "countdown": outbox_tasks.KICK_DELAY_SECONDS}]


def test_beat_polls_the_outbox(make_settings: Callable[..., Settings]) -> None:
    from worker.tasks.app import configure

    settings = make_settings(broker_url="redis://127.0.0.1:6379/15", outbound={"poll_seconds": 3})
    app = configure(settings)
    entry = app.conf.beat_schedule["deliver-outbox"]
    assert (entry["task"], entry["schedule"]) == ("passsync.deliver_outbox", 3.0)
    assert "passsync.deliver_outbox" in app.tasks
