"""Delivering a workload through the real receiver and checking what the provider ends with."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.faults.workload import Workload, expected_passes
from tests.tasks.harness import Harness, signed
from worker.brokers import redis_client
from worker.providers.port import RunningSandbox
from worker.sync.models import PassMapping

DRAIN_TIMEOUT = 120.0  # generous: a slow CI machine must not fail a correct run


def post(client: TestClient, body: bytes) -> dict[str, Any]:
    """One signed delivery; anything but 202 fails the test (nothing may be refused)."""
    answer = client.post("/webhooks/crm", **signed(body))
    assert answer.status_code == 202, answer.text
    result: dict[str, Any] = answer.json()
    return result


def deliver(client: TestClient, bodies: list[bytes], *, pace: float = 0.0) -> Counter[str]:
    """Each body once, in order, `pace` seconds apart; returns the summed `accepted` and
    `duplicates`. Pacing spreads a customer's events over more than the coalescing window,
    so the faults meet a realistic number of provider calls."""
    totals: Counter[str] = Counter()
    for body in bodies:
        totals.update(post(client, body))
        time.sleep(pace)
    return totals


def deliver_concurrently(client: TestClient, bodies: list[bytes], copies: int) -> Counter[str]:
    """Each body `copies` times at once (threads released together), body after body."""
    totals: Counter[str] = Counter()
    lock = threading.Lock()

    def send(body: bytes, barrier: threading.Barrier) -> None:
        barrier.wait()
        answer = post(client, body)
        with lock:
            totals.update(answer)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        for body in bodies:
            barrier = threading.Barrier(copies)
            futures = [pool.submit(send, body, barrier) for _ in range(copies)]
            for future in futures:
                future.result()
    return totals


def start_ready_worker(harness: Harness, concurrency: int = 2) -> subprocess.Popen[bytes]:
    """Start a worker and wait until it consumes (its "ready." log line), so deliveries
    meet a running worker rather than a backlog that a cold start would coalesce."""
    log = harness.workdir / f"worker-{len(harness.workers)}.log"
    proc = harness.start_worker(concurrency=concurrency)
    harness.wait_for(lambda: " ready." in log.read_text(errors="replace"), "a ready worker")
    return proc


def handled_count(harness: Harness) -> int:
    return sum(status == "handled" for status in harness.statuses().values())


def broker_backlog(harness: Harness) -> dict[str, int]:
    """Messages waiting in the realtime queue, and delivered but not yet acknowledged."""
    client = redis_client(harness.settings.broker_url)
    try:
        waiting = sum(int(client.llen(key)) for key in client.scan_iter(match="realtime*"))
        return {"waiting": waiting, "unacked": int(client.hlen("unacked"))}
    finally:
        client.close()


def wait_converged(
    harness: Harness,
    workload: Workload,
    *,
    tick: Callable[[], None] = lambda: None,
) -> None:
    """Wait until every event is handled and the broker holds no message (redeliveries of
    killed workers' messages included), calling `tick` on every poll."""
    ids = {e.id for e in workload.events}

    def done() -> bool:
        tick()
        statuses = harness.statuses()
        if not all(statuses.get(i) == "handled" for i in ids):
            return False
        return broker_backlog(harness) == {"waiting": 0, "unacked": 0}

    try:
        harness.wait_for(done, "every event handled, the broker idle", timeout=DRAIN_TIMEOUT)
    except AssertionError as exc:
        counts = Counter(harness.statuses().values())
        raise AssertionError(f"{dict(counts)} {broker_backlog(harness)}\n{exc}") from None


def assert_provider_matches_model(harness: Harness, workload: Workload) -> None:
    """Nothing lost, no twin, and every pass shows what applying the events in order gives,
    read from the sandbox's own state (any platform's, through RunningSandbox.state)."""
    assert harness.statuses() == {e.id: "handled" for e in workload.events}
    sandbox: RunningSandbox = harness.sandbox  # type: ignore[assignment]
    live = [p for p in sandbox.state() if not p.deleted]
    twins = {u: n for u, n in Counter(p.external_id for p in live).items() if n > 1}
    assert twins == {}
    expected = expected_passes(workload.events)
    assert {p.external_id: p.fields for p in live} == expected
    assert {p.template for p in live} == {"Loyalty Card"}
    with harness.db.sessions() as session:
        mappings = session.execute(select(PassMapping)).scalars().all()
        ours = {m.user_provided_id: m.provider_pass_id for m in mappings}
    assert ours == {p.external_id: p.pass_id for p in live}


class Throttle:
    """Calls `action` at most once per `every` seconds (a polling tick); keeps its results."""

    def __init__(self, action: Callable[[], int], every: float) -> None:
        self._action = action
        self._every = every
        self._last = 0.0
        self.results: list[int] = []

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self.results.append(self._action())
