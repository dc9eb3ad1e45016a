"""Campaigns with real `passsync worker` and `passsync beat` processes, Postgres, Redis and the
sandbox: SIGKILL of the worker and the dispatcher, and realtime events during a campaign."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select, text

from tests.conftest import need_service
from tests.tasks.harness import SANDBOX_KEY, SECRET, event_body, live_passes, signed
from worker.api.app import create_app
from worker.audit.models import AuditEntry
from worker.brokers import make_ping
from worker.campaigns.importer import import_rows, read_csv
from worker.campaigns.models import CampaignRecipient
from worker.campaigns.service import CampaignSpec, create_campaign, progress, start
from worker.config import Settings, load_settings
from worker.db import Base, Database
from worker.inbound.models import InboundEvent
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import SandboxSettings
from worker.sync.rules import compile_rules
from worker.tasks.app import configure
from worker.tasks.jobs import enqueue_events
from worker.tasks.runtime import reset_runtime

pytestmark = pytest.mark.slow
FLEET_REDIS_URL = os.environ.get("PASSSYNC_TEST_FLEET_REDIS_URL", "redis://127.0.0.1:6379/12")


@dataclass
class Fleet:
    env: dict[str, str]
    settings: Settings
    db: Database
    sandbox: SandboxHandle
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{args[0]}-{len(self.procs)}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        logs = "\n".join(p.read_text()[-3000:] for p in self.workdir.glob("*.log"))
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def campaign(self, recipients: int) -> int:
        rows = "customer_id,first_name,tier\n" + "".join(
            f"k-{i},Name{i},gold\n" for i in range(recipients)
        )
        with self.db.session() as session:
            rules = compile_rules(self.settings.sync)
            campaign = create_campaign(session, CampaignSpec(name="proc"), rules)
            import_rows(session, campaign.id, read_csv(io.StringIO(rows)), batch_rows=500)
            start(session, campaign.id)
            return campaign.id

    def counts(self, campaign_id: int) -> tuple[str, int, int]:
        """(status, finished, remaining)."""
        with self.db.session() as session:
            shown = progress(session, campaign_id)
        return shown.status, shown.done + shown.skipped, shown.remaining


@pytest.fixture(scope="module")
def _sandbox() -> Iterator[SandboxHandle]:
    settings = SandboxSettings(host="127.0.0.1", port=0, api_key=SecretStr(SANDBOX_KEY))
    with running_sandbox(settings) as handle:
        yield handle


@pytest.fixture
def fleet_redis() -> Iterator[str]:
    """A Redis database of its own: a flush by another suite's fixture would also drop the
    broker's queue bindings under these long-running processes."""
    need_service("Redis", FLEET_REDIS_URL)
    client = redis.Redis.from_url(FLEET_REDIS_URL)
    client.flushdb()
    yield FLEET_REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def fleet(
    pg_url: str,
    fleet_redis: str,
    _sandbox: SandboxHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    redis_url = fleet_redis
    _sandbox.reset()
    env = {
        "PASSSYNC_DATABASE_URL": pg_url,
        "PASSSYNC_BROKER_URL": redis_url,
        "PASSSYNC_DATA_DIR": str(tmp_path / "data"),
        "PASSSYNC_SOURCES__CRM__SECRET": SECRET,
        "PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL": _sandbox.base_url,
        "PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY": SANDBOX_KEY,
        "PASSSYNC_PROVIDERS__PASSCREATOR__BACKOFF_SECONDS": "0.05",
        "PASSSYNC_CELERY__VISIBILITY_TIMEOUT_SECONDS": "10",
        "PASSSYNC_CELERY__UNACKED_RESTORE_INTERVAL_SECONDS": "1",
        "PASSSYNC_SYNC__RETRY_BASE_SECONDS": "0.2",
        "PASSSYNC_SYNC__RETRY_MAX_SECONDS": "2",
        "PASSSYNC_SYNC__CLAIM_SECONDS": "3",
        "PASSSYNC_SYNC__COALESCE_WINDOW_MS": "0",
        "PASSSYNC_RATELIMIT__PER_MINUTE": "1200",
        "PASSSYNC_RATELIMIT__KEY_PREFIX": f"test:rl:{tmp_path.name}",
        "PASSSYNC_CAMPAIGNS__CHUNK_SIZE": "10",
        "PASSSYNC_CAMPAIGNS__MAX_QUEUED_CHUNKS": "3",
        "PASSSYNC_CAMPAIGNS__TICK_SECONDS": "0.5",
        "PASSSYNC_CAMPAIGNS__REQUEUE_AFTER_SECONDS": "4",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    configure(settings)
    reset_runtime()
    db = Database(pg_url)
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    fleet = Fleet(dict(os.environ), settings, db, _sandbox, tmp_path)
    try:
        yield fleet
    finally:
        fleet.stop()
        reset_runtime()
        db.dispose()


def test_sigkill_of_worker_and_dispatcher_mid_campaign_does_every_recipient_once(
    fleet: Fleet,
) -> None:
    # Given a running campaign of 150 recipients, a worker and beat (the dispatcher)
    fleet.sandbox.configure(latency_ms=5)
    campaign_id = fleet.campaign(150)
    worker = fleet.spawn("worker", "--concurrency", "2")
    beat = fleet.spawn("beat")
    fleet.wait_for(lambda: fleet.counts(campaign_id)[1] >= 30, "30 recipients done")
    # When both are killed mid-campaign, and started again
    fleet.kill(worker)
    fleet.kill(beat)
    assert fleet.counts(campaign_id)[2] > 0
    fleet.spawn("worker", "--concurrency", "2")
    fleet.spawn("beat")
    fleet.wait_for(lambda: fleet.counts(campaign_id)[0] == "completed", "completion", 120)
    # Then every recipient is done exactly once: one pass each, one create each
    with fleet.db.sessions() as session:
        states = session.execute(
            select(CampaignRecipient.state, func.count()).group_by(CampaignRecipient.state)
        ).all()
        ledger = session.execute(
            select(InboundEvent.status, func.count()).group_by(InboundEvent.status)
        ).all()
        audited = session.scalar(
            select(func.count()).where(
                AuditEntry.actor_kind == "campaign", AuditEntry.actor_id == str(campaign_id)
            )
        )
    assert states == [("done", 150)]
    assert ledger == [("handled", 150)]
    passes = live_passes(fleet.sandbox)
    assert sorted(p["userProvidedId"] for p in passes) == sorted(
        f"passsync-loyalty-k-{i}" for i in range(150)
    )
    assert fleet.sandbox.stats()["creates"] == 150
    assert audited is not None and audited >= 150


def test_a_realtime_event_during_a_campaign_is_applied_long_before_it_ends(
    fleet: Fleet,
) -> None:
    # Given a campaign of 300 recipients paced at 20/s by the shared limit (15 s), two
    # workers each serving both queues, and beat
    campaign_id = fleet.campaign(300)
    for _ in range(2):
        fleet.spawn("worker", "--concurrency", "2", "--queues", "realtime,bulk")
    fleet.spawn("beat")
    fleet.wait_for(lambda: fleet.counts(campaign_id)[1] >= 40, "the campaign under way")
    # When a customer event arrives through the receiver
    app = create_app(
        fleet.settings,
        fleet.db,
        enqueue=enqueue_events,
        broker_ping=make_ping(fleet.env["PASSSYNC_BROKER_URL"]),
    )
    with TestClient(app) as client:
        answer = client.post("/webhooks/crm", **signed(event_body("rt-1", customer="vip")))
        assert answer.status_code == 202

        def handled() -> bool:
            with fleet.db.sessions() as session:
                return (
                    session.scalar(
                        select(InboundEvent.status).where(InboundEvent.event_id == "rt-1")
                    )
                    == "handled"
                )

        fleet.wait_for(handled, "the realtime event handled")
    # Then it was applied while most of the campaign was still to go (not queued behind it)
    status, _finished, remaining = fleet.counts(campaign_id)
    assert status == "running"
    assert remaining >= 150
    assert [
        p["userProvidedId"] for p in live_passes(fleet.sandbox) if "vip" in p["userProvidedId"]
    ] == ["passsync-loyalty-vip"]
