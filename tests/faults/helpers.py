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
from worker.config import Settings
from worker.providers.port import RunningSandbox
from worker.sync.models import PassMapping
from worker.tasks.app import unacked_mutex_expire

# A run fails when it stops moving for this many recovery bounds (see `recovery_bound`): a slow
# machine only makes it slower, and progress of any kind resets the wait.
STALL_BOUNDS = 3.0
# A run that keeps moving still ends: far above any correct run on a loaded 2-core machine.
DRAIN_CAP_SECONDS = 900.0
WORKER_START_SECONDS = 180.0  # a cold interpreter plus Celery's pool under load


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
    harness.wait_for(
        lambda: " ready." in log.read_text(errors="replace"),
        "a ready worker",
        timeout=WORKER_START_SECONDS,
    )
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


def recovery_bound(settings: Settings) -> float:
    """The longest the system may rightly look idle while work is left (seconds).

    A SIGKILLed worker's unacknowledged messages come back after the visibility timeout (seen
    by the next restore pass); the passes it claimed are free once their lease lapses; a
    message it had popped but not recorded is swept once stale (a sweep pass later, and a
    second sweep waits twice as long); a retry waits at most retry_max; a customer's events
    wait out the coalescing window. Derived from the settings the workers run with, so the
    test follows them instead of guessing a time.
    """
    celery, sync = settings.celery, settings.sync
    return (
        celery.visibility_timeout_seconds
        + celery.unacked_restore_interval_seconds
        + unacked_mutex_expire(celery.unacked_restore_interval_seconds)
        + sync.claim_seconds
        + sync.sweep_interval_seconds
        + 3 * sync.sweep_stale_after_seconds
        + sync.retry_max_seconds
        + sync.coalesce_window_ms / 1000
    )


def wait_converged(
    harness: Harness,
    workload: Workload,
    *,
    tick: Callable[[], None] = lambda: None,
) -> None:
    """Wait until every event is handled and the broker holds no message (redeliveries of
    killed workers' messages included), calling `tick` on every poll (see `wait_moving`)."""
    ids = {e.id for e in workload.events}

    def state() -> tuple[bool, tuple[int, ...]]:
        tick()
        statuses = harness.statuses()
        handled = sum(statuses.get(i) == "handled" for i in ids)
        backlog = broker_backlog(harness)
        done = handled == len(ids) and backlog == {"waiting": 0, "unacked": 0}
        return done, (handled, backlog["waiting"], backlog["unacked"])

    wait_moving(harness, state, "every event handled, the broker idle")


def wait_handled(harness: Harness, at_least: int, what: str) -> None:
    """Wait until `at_least` events are handled (see `wait_moving`)."""

    def state() -> tuple[bool, tuple[int, ...]]:
        handled = handled_count(harness)
        backlog = broker_backlog(harness)
        return handled >= at_least, (handled, backlog["waiting"], backlog["unacked"])

    wait_moving(harness, state, what)


def wait_moving(
    harness: Harness,
    state: Callable[[], tuple[bool, tuple[int, ...]]],
    what: str,
    *,
    stall_after: float | None = None,
) -> None:
    """Poll `state` (done, progress marks) until done.

    No fixed deadline: the wait fails only when the marks (events handled, messages waiting
    or unacknowledged) stay the same for STALL_BOUNDS recovery bounds, so a loaded machine
    makes a run slower, never red; DRAIN_CAP_SECONDS still ends a run that moves forever.
    """
    if stall_after is None:
        stall_after = STALL_BOUNDS * recovery_bound(harness.settings)
    start = last_move = time.monotonic()
    seen: tuple[int, ...] | None = None
    while True:
        done, marks = state()
        if done:
            return
        now = time.monotonic()
        if marks != seen:
            seen, last_move = marks, now
        if now - last_move > stall_after or now - start > DRAIN_CAP_SECONDS:
            counts = Counter(harness.statuses().values())
            logs = "\n".join(p.read_text()[-3000:] for p in harness.workdir.glob("worker-*.log"))
            raise AssertionError(
                f"timed out waiting for {what}: {dict(counts)} marks {marks}, "
                f"nothing moved for {now - last_move:.0f} s (bound {stall_after:.0f} s), "
                f"{now - start:.0f} s in all\n{logs}"
            )
        time.sleep(0.1)


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
