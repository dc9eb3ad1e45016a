"""Fault injection with real `passsync worker` processes: duplicates, SIGKILL, lost publishes."""

from __future__ import annotations

import threading
import time

import psutil
import redis
from sqlalchemy import select

from tests.tasks.harness import Harness, event_body, live_passes, signed
from worker.brokers import redis_client
from worker.inbound.models import InboundEvent
from worker.sync.models import PassMapping
from worker.tasks.jobs import sweep_pending

PASS_PATH = "POST /api/v3/pass"
# A killed attempt's claim on its pass expires after this (the default, 300 s, is for real
# provider timeouts); longer than the slowest call the sandbox is told to make here.
SHORT_CLAIM = {"PASSSYNC_SYNC__CLAIM_SECONDS": "8"}


def test_same_event_three_times_and_concurrently_makes_one_pass_and_one_write(
    harness: Harness,
) -> None:
    # Given a worker and one signed event
    harness.start_worker(concurrency=2)
    body = event_body("evt-dup")
    client = harness.client()
    # When it is delivered three times in a row, then three times at once
    answers = [client.post("/webhooks/crm", **signed(body)).json() for _ in range(3)]
    threads = [
        threading.Thread(
            target=lambda: answers.append(client.post("/webhooks/crm", **signed(body)).json())
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    harness.wait_for(lambda: harness.statuses() == {"evt-dup": "handled"}, "the event handled")
    time.sleep(1.0)  # room for any stray duplicate to (wrongly) reach the provider
    # Then one ledger row, one pass, one provider write
    assert sorted(a["accepted"] for a in answers) == [0, 0, 0, 0, 0, 1]
    assert sum(a["duplicates"] for a in answers) == 5
    stats = harness.sandbox.stats()
    assert stats["creates"] == 1 and stats["writes"] == 1
    (stored,) = live_passes(harness.sandbox)
    assert stored["userProvidedId"] == "passsync-loyalty-c-1"
    assert stored["fields"]["tier"] == "gold"


def test_worker_killed_after_the_provider_write_applies_the_event_exactly_once(
    harness: Harness,
) -> None:
    # Given the provider applies a create but holds its answer for a while
    harness.sandbox.configure(answer_delay_ms=4000)
    harness.env.update(SHORT_CLAIM)
    worker = harness.start_worker()
    client = harness.client()
    assert client.post("/webhooks/crm", **signed(event_body("evt-kill")))
    harness.wait_for(lambda: harness.sandbox.stats()["creates"] == 1, "the provider write")
    # When the worker is SIGKILLed before it could record the answer
    harness.kill_worker(worker)
    assert harness.statuses() == {"evt-kill": "pending"}
    harness.sandbox.configure(answer_delay_ms=0)
    # And a new worker starts (the broker redelivers after the visibility timeout)
    harness.start_worker()
    harness.wait_for(
        lambda: harness.statuses() == {"evt-kill": "handled"}, "redelivery", timeout=90
    )
    # Then the existing pass was adopted: one pass, no twin
    passes = live_passes(harness.sandbox)
    assert [p["userProvidedId"] for p in passes] == ["passsync-loyalty-c-1"]
    stats = harness.sandbox.stats()
    assert stats["creates"] == 1
    assert stats["calls"][PASS_PATH] == 2  # the first create, and the retry refused as "used"
    with harness.db.sessions() as session:
        mapping = session.execute(select(PassMapping)).scalar_one()
    assert mapping.provider_pass_id == passes[0]["identifier"]


def test_pool_child_killed_mid_call_is_redelivered_and_applied_once(harness: Harness) -> None:
    # Given a worker whose pool child is inside a slow provider call
    harness.sandbox.configure(latency_ms=3000)
    harness.env.update(SHORT_CLAIM)
    worker = harness.start_worker()
    client = harness.client()
    client.post("/webhooks/crm", **signed(event_body("evt-child")))
    # (the worker lists the templates once at start, so the create marks the event's call)
    harness.wait_for(
        lambda: harness.sandbox.stats()["calls"].get(PASS_PATH, 0) >= 1,
        "the worker to start the event",
    )
    # When only the pool child is SIGKILLed
    children = psutil.Process(worker.pid).children()
    assert children, "prefork pool has a child"
    for child in children:
        child.kill()
    harness.sandbox.configure(latency_ms=0)
    # Then the worker itself redelivers it (reject_on_worker_lost) and it is applied once
    harness.wait_for(
        lambda: harness.statuses() == {"evt-child": "handled"}, "redelivery", timeout=90
    )
    assert len(live_passes(harness.sandbox)) == 1
    assert harness.sandbox.stats()["creates"] == 1


def test_broker_down_at_receive_keeps_the_event_and_the_sweeper_sends_it(
    harness: Harness,
) -> None:
    # Given the broker refuses publishes while an event arrives
    def broker_down(_ids: list[int]) -> None:
        raise redis.ConnectionError("broker down")

    answer = harness.client(enqueue=broker_down).post(
        "/webhooks/crm", **signed(event_body("evt-lost"))
    )
    # Then the event is accepted and committed, pending, and not queued
    assert answer.status_code == 202 and answer.json() == {"accepted": 1, "duplicates": 0}
    assert harness.statuses() == {"evt-lost": "pending"}
    assert redis_client(harness.settings.broker_url).llen("realtime") == 0
    # When the sweeper runs once the event is stale, and a worker is up
    with harness.db.session() as session:
        row = session.execute(select(InboundEvent)).scalar_one()
        row.updated_at = row.updated_at.replace(year=2020)
    assert sweep_pending() == 1
    assert redis_client(harness.settings.broker_url).llen("realtime") == 1
    assert sweep_pending() == 0  # just swept: left alone until stale again
    harness.start_worker()
    # Then the event is applied
    harness.wait_for(lambda: harness.statuses() == {"evt-lost": "handled"}, "the swept event")
    assert len(live_passes(harness.sandbox)) == 1
