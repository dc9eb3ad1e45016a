"""SIGKILL a whole worker during a provider call: its events are handled within seconds."""

from __future__ import annotations

import re
import time

import pytest

from tests.tasks.harness import Harness, event_body, live_passes, signed
from worker.brokers import redis_client
from worker.tasks.liveness import WORKERS_KEY, held_key

RECOVERY_TARGET_SECONDS = 30


def _held(harness: Harness) -> set[int]:
    client = redis_client(harness.settings.broker_url)
    return {
        int(i)
        for node in client.hkeys(WORKERS_KEY)
        for i in client.smembers(held_key(node.decode()))
    }


@pytest.mark.slow
def test_killed_worker_events_are_all_handled_within_30_s_and_waits_log_once(
    harness: Harness,
) -> None:
    # Given the defaults that matter here: the lease (sync.claim_seconds) and an hour-long
    # visibility timeout, so the broker alone would hand the messages back only after an hour
    harness.env.pop("PASSSYNC_SYNC__CLAIM_SECONDS", None)
    harness.env["PASSSYNC_CELERY__VISIBILITY_TIMEOUT_SECONDS"] = "3600"
    harness.env["PASSSYNC_PROVIDERS__PASSCREATOR__TIMEOUT_SECONDS"] = "60"
    # And a provider that applies a create but holds its answer for long
    harness.sandbox.configure(answer_delay_ms=30_000)
    worker = harness.start_worker()
    client = harness.client()
    for customer in ("c-1", "c-2", "c-3"):
        assert client.post(
            "/webhooks/crm", **signed(event_body(f"evt-{customer}", customer=customer))
        )
    harness.wait_for(lambda: harness.sandbox.stats()["creates"] == 1, "the first provider write")
    # (its heartbeat lists the event in the call, and any it prefetched meanwhile)
    harness.wait_for(lambda: len(_held(harness)) >= 1, "the worker's heartbeat", timeout=20)
    # When the worker is SIGKILLed during that call
    harness.kill_worker(worker)
    killed_at = time.monotonic()
    harness.sandbox.configure(answer_delay_ms=0)
    assert set(harness.statuses().values()) == {"pending"}
    # And a new worker starts, and two more events of the customer whose pass was claimed come
    harness.start_worker()
    for minute in (1, 2):
        body = event_body(f"evt-c-1-{minute}", customer="c-1", tier="silver", minute=minute)
        assert client.post("/webhooks/crm", **signed(body))
    # Then every event is handled within 30 s of the kill
    harness.wait_for(
        lambda: set(harness.statuses().values()) == {"handled"},
        "every event handled",
        timeout=RECOVERY_TARGET_SECONDS,
    )
    recovery = time.monotonic() - killed_at
    assert recovery < RECOVERY_TARGET_SECONDS
    # Exactly once in effect: one pass per customer, the killed create adopted, not twinned
    passes = live_passes(harness.sandbox)
    assert sorted(p["userProvidedId"] for p in passes) == [
        "passsync-loyalty-c-1",
        "passsync-loyalty-c-2",
        "passsync-loyalty-c-3",
    ]
    assert harness.sandbox.stats()["creates"] == 3
    # And a wait on the claimed pass is logged once per event, never once per retry
    log = (harness.workdir / "worker-1.log").read_text()
    assert "WaitingForPass" not in log
    waits = re.findall(r"event (\d+) waits: ", log)
    assert len(waits) == len(set(waits))
