"""SIGKILL recovery: how long after a worker is killed mid-call are all its events handled?

`python -m bench.crash_recovery [--runs 3]` (part of `make bench`): SQLite + the embedded Redis,
the local sandbox holding each create's answer for 30 s (the call is in flight when the kill
comes), default `sync.claim_seconds` (10 s) and an hour-long visibility timeout (so the broker
alone would give the messages back only after an hour). Per run: 3 customers' events, the
worker SIGKILLed (whole process group) during the first create, a new worker started, two more
events for the claimed customer; measured: seconds from the kill to every event handled.
Baseline in the same script: the lease bound itself (claim_seconds), and the broker's own
redelivery bound (the visibility timeout, 3,600 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select

from worker.brokers import EmbeddedRedis
from worker.config import SyncSettings, load_settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.migrate import upgrade
from worker.providers import registry
from worker.providers.port import RunningSandbox

KEY = "bench-crash-key"
KIND = registry.default_kind()  # the first registered platform's sandbox, one account of it
ACCOUNT = f"PASSSYNC_PROVIDERS__{KIND.upper()}__"
VISIBILITY = 3600


def _store(db: Database, event_id: str, customer: str, minute: int) -> int:
    event = CanonicalEvent.model_validate(
        {
            "id": event_id,
            "type": "customer.created",
            "occurred_at": datetime(2026, 5, 1, 10, minute, tzinfo=UTC).isoformat(),
            "customer": {"id": customer, "first_name": "Ada", "attributes": {"tier": "gold"}},
        }
    )
    with db.session() as session:
        row = InboundEvent(
            source="crm",
            event_id=event.id,
            type=event.type,
            customer_id=event.customer.id,
            occurred_at=event.occurred_at,
            payload=event.model_dump(mode="json"),
        )
        session.add(row)
        session.flush()
        return row.id


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def one_run(sandbox: RunningSandbox, workdir: Path) -> float:
    sandbox.reset()
    db_url = f"sqlite:///{workdir / 'bench.db'}"
    upgrade(db_url)
    redis = EmbeddedRedis(workdir / "redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSSYNC_")} | {
        "PASSSYNC_CONFIG": str(workdir / "config.yaml"),
        "PASSSYNC_DATABASE_URL": db_url,
        "PASSSYNC_BROKER_URL": redis.url,
        "PASSSYNC_DATA_DIR": str(workdir / "data"),
        **{f"{ACCOUNT}{k.upper()}": v for k, v in sandbox.account_overrides().items()},
        f"{ACCOUNT}KIND": KIND,
        f"{ACCOUNT}TIMEOUT_SECONDS": "60",
        "PASSSYNC_CELERY__VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY),
        "PASSSYNC_RATELIMIT__PER_MINUTE": "60000",
        "PASSSYNC_RATELIMIT__BURST": "100",
    }
    (workdir / "config.yaml").write_text("{}\n")
    os.environ.update(env)
    from worker.tasks.app import configure
    from worker.tasks.jobs import enqueue_events

    configure(load_settings())
    db = Database(db_url)
    workers: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        log = (workdir / f"worker-{len(workers)}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker", "--concurrency", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        workers.append(proc)
        return proc

    def statuses() -> set[str]:
        with db.session() as session:
            return set(session.scalars(select(InboundEvent.status)))

    try:
        sandbox.configure(answer_delay_ms=30_000)
        first = start()
        ids = [_store(db, f"e-{c}", c, 0) for c in ("c-1", "c-2", "c-3")]
        enqueue_events(ids)
        if not _wait(lambda: sandbox.stats()["creates"] >= 1, 120):
            raise RuntimeError("the first create never reached the sandbox")
        time.sleep(4)  # at least one heartbeat of the worker
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        sandbox.configure(answer_delay_ms=0)
        start()
        enqueue_events([_store(db, f"e-c-1-{m}", "c-1", m) for m in (1, 2)])
        if not _wait(lambda: statuses() == {"handled"}, 600):
            raise RuntimeError("events not handled within 600 s")
        return time.monotonic() - killed
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        db.dispose()
        redis.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times: list[float] = []
    kit = registry.get_kind(KIND).sandbox
    assert kit is not None
    fields = kit.settings_model.model_fields
    settings = kit.settings_model(
        port=0, **({"api_key": SecretStr(KEY)} if "api_key" in fields else {})
    )
    with kit.running(settings) as sandbox:
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                times.append(one_run(sandbox, Path(tmp)))
            print(f"  run {run + 1}: every event handled {times[-1]:.1f} s after the kill")
    claim = float(SyncSettings.model_fields["claim_seconds"].default)
    report = {
        "runs": times,
        "median_seconds": statistics.median(times),
        "max_seconds": max(times),
        "lease_seconds": claim,
        "broker_redelivery_seconds": VISIBILITY,
        "ratio_broker_to_median": VISIBILITY / statistics.median(times),
    }
    print("benchmark: SIGKILL during a provider call, time to every event handled")
    print(f"  median / max seconds   {report['median_seconds']:.1f} / {report['max_seconds']:.1f}")
    print(f"  lease (claim_seconds)  {claim:.0f} s; broker alone: {VISIBILITY} s")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
