"""Scans through HTTP: ledger, dedup, usage rules (coupon, loyalty), follow-ups, outbox."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.api.conftest import UNKNOWN_SECRET, RecordingEnqueue, signed_headers
from tests.scans.conftest import post_scans, run_published, scan, scans, seed_pass
from worker.config import Settings
from worker.db import Database
from worker.outbox.models import OutboxEvent
from worker.providers.errors import TransientError
from worker.providers.memory import MemoryProvider
from worker.scans.models import PassUsage
from worker.scans.usage import UsageContext, process_scan
from worker.sync.models import PassMapping


def outbox(db: Database) -> list[OutboxEvent]:
    with db.session() as session:
        return list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


def test_a_coupon_scanned_twice_is_voided_once_and_the_second_scan_rejected(
    client: TestClient,
    db: Database,
    settings: Settings,
    provider: MemoryProvider,
    published: RecordingEnqueue,
) -> None:
    # Given a live Welcome Discount coupon
    pass_id = seed_pass(db, provider, "cus_1", "welcome")
    # When it is scanned twice (two different scans, by customer id + pass key)
    first = post_scans(
        client, scan("s1", customer_id="cus_1", pass_key="welcome", location="Berlin Mitte")
    )
    second = post_scans(client, scan("s2", customer_id="cus_1", pass_key="welcome"))
    statuses = run_published(db, settings, provider, published)
    # Then both are recorded, the coupon is voided once, the second scan is rejected
    assert (first.status_code, first.json()) == (202, {"accepted": 1, "duplicates": 0})
    assert (second.status_code, second.json()) == (202, {"accepted": 1, "duplicates": 0})
    assert statuses == ["accepted", "rejected"]
    assert provider.calls["void"] == 1
    assert provider.passes[pass_id].voided is True
    assert provider.pushes == [(pass_id, "Thanks for visiting Berlin Mitte!")]
    rows = scans(db)
    assert [(r.scan_id, r.status, r.reason) for r in rows] == [
        ("s1", "accepted", None),
        ("s2", "rejected", "coupon already redeemed"),
    ]
    with db.session() as session:
        assert session.scalars(select(PassMapping.status)).all() == ["voided"]
    # And one pass.used event (for the valid scan only) is in the outbox
    events = outbox(db)
    assert [(e.type, e.customer_id, e.cause) for e in events] == [
        ("pass.used", "cus_1", f"scan:{rows[0].id}")
    ]
    assert events[0].payload["scan"]["location"] == "Berlin Mitte"


def test_a_loyalty_scan_updates_the_visits_field_at_the_provider(
    client: TestClient,
    db: Database,
    settings: Settings,
    provider: MemoryProvider,
    published: RecordingEnqueue,
) -> None:
    # Given a live loyalty card
    pass_id = seed_pass(db, provider, "cus_2", "loyalty")
    # When it is scanned twice by provider pass id, with amounts
    post_scans(
        client,
        {
            "scans": [
                scan("v1", pass_id=pass_id, amount=20.0),
                scan("v2", pass_id=pass_id, amount=5.0),
            ]
        },
    )
    statuses = run_published(db, settings, provider, published)
    # Then the visits and scan points fields are set at the provider, nothing voided
    assert statuses == ["accepted", "accepted"]
    assert provider.passes[pass_id].fields == {"visits": 2, "scanPoints": 12.5}
    assert provider.calls["update"] == 2
    assert provider.calls["void"] == 0
    with db.session() as session:
        usage = session.scalars(select(PassUsage)).one()
    assert (usage.uses, usage.visits, usage.points) == (2, 2, 12.5)


def test_a_retried_scan_repeats_its_stored_effect_and_counts_the_visit_once(
    client: TestClient,
    db: Database,
    settings: Settings,
    provider: MemoryProvider,
    published: RecordingEnqueue,
) -> None:
    # Given a loyalty scan whose provider call fails transiently on the first attempt
    pass_id = seed_pass(db, provider, "cus_3", "loyalty")
    post_scans(client, scan("r1", pass_id=pass_id))
    [[scan_row_id]] = published.calls
    provider.fail_next["update"] = [TransientError("boom")]
    ctx = UsageContext(settings, provider)
    with pytest.raises(TransientError), db.session() as session:
        process_scan(session, scan_row_id, ctx)
    # When the task runs again
    with db.session() as session:
        result = process_scan(session, scan_row_id, ctx)
    # Then the visit is counted once and the same value is written
    assert str(result.status) == "accepted"
    assert provider.passes[pass_id].fields == {"visits": 1, "scanPoints": 0.0}
    assert provider.calls["update"] == 2
    assert [(r.status, r.effect) for r in scans(db)] == [
        (
            "accepted",
            {
                "void": False,
                "fields": {"visits": 1, "scanPoints": 0.0},
                "push": None,
                "counted": {"uses": 1, "visits": 1, "points": 0.0},
            },
        )
    ]


def test_a_duplicate_scan_id_makes_one_usage_row(
    client: TestClient,
    db: Database,
    settings: Settings,
    provider: MemoryProvider,
    published: RecordingEnqueue,
) -> None:
    # Given a loyalty card
    pass_id = seed_pass(db, provider, "cus_4", "loyalty")
    # When the same scan id arrives twice (a retry), once more inside one batch
    one = post_scans(client, scan("d1", pass_id=pass_id))
    two = post_scans(client, {"scans": [scan("d1", pass_id=pass_id), scan("d1", pass_id=pass_id)]})
    statuses = run_published(db, settings, provider, published)
    # Then one scan row, one visit, one provider call
    assert one.json() == {"accepted": 1, "duplicates": 0}
    assert two.json() == {"accepted": 0, "duplicates": 2}
    assert statuses == ["accepted"]
    assert len(scans(db)) == 1
    assert provider.passes[pass_id].fields == {"visits": 1, "scanPoints": 0.0}


def test_a_scan_of_an_unknown_barcode_is_recorded_as_unknown(
    client: TestClient,
    db: Database,
    settings: Settings,
    provider: MemoryProvider,
    published: RecordingEnqueue,
) -> None:
    # Given no pass with this barcode
    seed_pass(db, provider, "cus_5", "welcome")
    # When it is scanned
    response = post_scans(client, scan("u1", barcode="NOPE-123", location="Hamburg"))
    statuses = run_published(db, settings, provider, published)
    # Then the scan is kept as unknown, and nothing is sent or emitted
    assert response.status_code == 202
    assert statuses == ["unknown"]
    assert [(r.barcode, r.status, r.mapping_id) for r in scans(db)] == [
        ("NOPE-123", "unknown", None)
    ]
    assert sum(provider.calls.values()) == 0
    assert outbox(db) == []


def test_a_barcode_equal_to_the_user_provided_id_finds_the_pass(
    client: TestClient,
    db: Database,
    settings: Settings,
    provider: MemoryProvider,
    published: RecordingEnqueue,
) -> None:
    # Given a coupon whose barcode carries the user-provided id
    pass_id = seed_pass(db, provider, "cus_6", "welcome")
    # When it is scanned by barcode
    post_scans(client, scan("b1", barcode="passsync-welcome-cus_6"))
    # Then it is redeemed
    assert run_published(db, settings, provider, published) == ["accepted"]
    assert provider.passes[pass_id].voided is True


def test_an_unsigned_or_invalid_scan_is_refused_and_nothing_is_stored(
    client: TestClient, db: Database, published: RecordingEnqueue
) -> None:
    # Given a scan signed with a wrong secret, one for an unknown source, one without a pass
    raw = json.dumps(scan("x1", barcode="B")).encode()
    wrong = client.post("/scans/pos", content=raw, headers=signed_headers(raw, UNKNOWN_SECRET))
    unknown = client.post("/scans/nowhere", content=raw, headers=signed_headers(raw))
    invalid = post_scans(client, scan("x2", location="Berlin"))
    # Then 401, 404, 422; no row, nothing published
    assert (wrong.status_code, unknown.status_code, invalid.status_code) == (401, 404, 422)
    assert invalid.json()["detail"][0]["msg"].endswith(
        "a scan names barcode, pass_id, or customer_id and pass_key"
    )
    assert scans(db) == []
    assert published.calls == []
