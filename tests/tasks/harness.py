"""The process-test harness: worker processes, an in-process receiver, signed bodies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.signatures import sign
from worker.providers.passcreator.sandbox.server import SandboxHandle
from worker.tasks.app import broker_ping
from worker.tasks.jobs import enqueue_events

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SANDBOX_KEY = "proc-test-key"


@dataclass
class Harness:
    """A configured system: env for worker processes, an in-process receiver, helpers."""

    env: dict[str, str]
    settings: Settings
    db: Database
    sandbox: SandboxHandle
    workdir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    clients: list[TestClient] = field(default_factory=list)

    def start_worker(self, concurrency: int = 1) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"worker-{len(self.workers)}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker", "--concurrency", str(concurrency)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker's whole process group: main process and pool children."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for client in self.clients:
            client.__exit__(None, None, None)
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def client(self, enqueue: Callable[[list[int]], None] = enqueue_events) -> TestClient:
        """A receiver on one event loop with its lifespan running (as under uvicorn)."""
        app = create_app(
            self.settings,
            self.db,
            enqueue=enqueue,
            broker_ping=broker_ping(self.settings.broker_url),
        )
        client = TestClient(app)
        client.__enter__()
        self.clients.append(client)
        return client

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        logs = "\n".join(p.read_text()[-3000:] for p in self.workdir.glob("worker-*.log"))
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def statuses(self) -> dict[str, str]:
        with self.db.sessions() as session:
            rows = session.execute(select(InboundEvent.event_id, InboundEvent.status)).all()
        return dict(rows)


def event_body(
    event_id: str, *, customer: str = "c-1", tier: str = "gold", minute: int = 0
) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "type": "customer.created",
            "occurred_at": datetime(2026, 5, 1, 10, minute, tzinfo=UTC).isoformat(),
            "customer": {"id": customer, "first_name": "Ada", "attributes": {"tier": tier}},
        }
    ).encode()


def signed(body: bytes) -> dict[str, Any]:
    headers = sign(SECRET, f"msg_{uuid.uuid4().hex}", int(time.time()), body)
    return {"content": body, "headers": headers | {"content-type": "application/json"}}


def live_passes(sandbox: SandboxHandle) -> list[dict[str, Any]]:
    return [p for p in sandbox.passes() if not p["deleted"]]
