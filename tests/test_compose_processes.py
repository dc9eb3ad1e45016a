"""docker-compose.yml as local processes: the commands it declares, its environment, its
health checks, against the machine's Postgres and Redis (no Docker engine here).

Each service runs the exact `command` of the compose file with the compose environment,
where only what a container network provides is replaced: the database and broker URLs
(the machine's), the provider's URL (a local sandbox), a port and a data directory per
service (containers each have their own). A campaign and a realtime event go through to
completion; then each health check command runs against the live process and a stopped one.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from pydantic import SecretStr
from sqlalchemy import select, text

from tests.conftest import need_service
from tests.tasks.harness import SANDBOX_KEY, SECRET, event_body, live_passes, signed
from worker.campaigns.importer import import_rows, read_csv
from worker.campaigns.service import CampaignSpec, create_campaign, progress, start
from worker.config import load_settings
from worker.db import Base, Database
from worker.inbound.models import InboundEvent
from worker.providers.passcreator.sandbox.server import running_sandbox
from worker.providers.passcreator.settings import SandboxSettings
from worker.stack import free_port
from worker.sync.rules import compile_rules

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
FLEET_REDIS_URL = os.environ.get("PASSSYNC_TEST_FLEET_REDIS_URL", "redis://127.0.0.1:6379/12")


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} against `env`."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", one, value)


class Layout:
    """The compose services as processes; `env_of` is what one service's container sees."""

    def __init__(self, workdir: Path, local: dict[str, str]) -> None:
        self.spec = compose()
        self.workdir = workdir
        self.local = local
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_ports: dict[str, int] = {}

    def env_of(self, service: str) -> dict[str, str]:
        declared = self.spec["x-passsync"]["environment"]
        env = dict(os.environ)
        env.update({k: interpolate(str(v), self.local) for k, v in declared.items()})
        # What the container network and volumes would provide, and nothing else:
        env["PASSSYNC_DATABASE_URL"] = self.local["DATABASE_URL"]
        env["PASSSYNC_BROKER_URL"] = self.local["BROKER_URL"]
        env["PASSSYNC_API__HOST"] = "127.0.0.1"
        env["PASSSYNC_API__PORT"] = self.local["API_PORT"]
        env["PASSSYNC_DATA_DIR"] = str(self.workdir / service)
        env["PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL"] = self.local["PROVIDER_URL"]
        env["PASSSYNC_METRICS__WORKER_PORT"] = str(
            self.metrics_ports.setdefault(service, free_port())
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(self.local_tuning())
        return env

    def local_tuning(self) -> dict[str, str]:
        # Test pacing only (short ticks and retries); the process layout is the compose one.
        return {
            "PASSSYNC_CAMPAIGNS__CHUNK_SIZE": "10",
            "PASSSYNC_CAMPAIGNS__TICK_SECONDS": "0.5",
            "PASSSYNC_SYNC__COALESCE_WINDOW_MS": "0",
            "PASSSYNC_RATELIMIT__PER_MINUTE": "6000",
            "PASSSYNC_RATELIMIT__KEY_PREFIX": self.local["RATELIMIT_PREFIX"],
        }

    def command(self, service: str) -> list[str]:
        argv = list(self.spec["services"][service]["command"])
        assert argv[0] == "passsync"
        return [sys.executable, "-m", "worker.cli", *argv[1:]]

    def run_once(self, service: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(  # noqa: PLW1510 - the caller checks the code
            self.command(service), env=self.env_of(service), capture_output=True, timeout=120
        )

    def start(self, service: str) -> None:
        log = (self.workdir / f"{service}.log").open("ab")
        self.procs[service] = subprocess.Popen(
            self.command(service),
            env=self.env_of(service),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def stop(self, service: str) -> None:
        proc = self.procs[service]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for service in list(self.procs):
            self.stop(service)

    def health(self, service: str) -> int:
        """Run the service's health check command, as the container runtime would."""
        argv = self.spec["services"][service]["healthcheck"]["test"]
        assert argv[:2] == ["CMD", "passsync"], argv
        done = subprocess.run(  # noqa: PLW1510
            [sys.executable, "-m", "worker.cli", *argv[2:]],
            env=self.env_of(service),
            capture_output=True,
            timeout=60,
        )
        return done.returncode

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-2500:]}" for p in self.workdir.glob("*.log")
        )

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")


@pytest.fixture
def layout(pg_url: str, tmp_path: Path) -> Iterator[tuple[Layout, Any, Database]]:
    need_service("Redis", FLEET_REDIS_URL)
    client = redis.Redis.from_url(FLEET_REDIS_URL)
    client.flushdb()
    sandbox_settings = SandboxSettings(host="127.0.0.1", port=0, api_key=SecretStr(SANDBOX_KEY))
    db = Database(pg_url)
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    with running_sandbox(sandbox_settings) as sandbox:
        local = {
            "DATABASE_URL": pg_url,
            "BROKER_URL": FLEET_REDIS_URL,
            "API_PORT": str(free_port()),
            "PROVIDER_URL": sandbox.base_url,
            "RATELIMIT_PREFIX": f"test:compose:{tmp_path.name}",
            # The .env file an operator writes next to docker-compose.yml:
            "PASSSYNC_SOURCES__CRM__SECRET": SECRET,
            "PASSSYNC_SOURCES__POS__SECRET": SECRET,
            "PASSSYNC_CALLBACKS__SECRET": "callbacks-secret-0123456789",
            "PASSSYNC_ADMIN_TOKENS__OPS__SECRET": "ops-token-0123456789",
            "PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY": SANDBOX_KEY,
        }
        built = Layout(tmp_path, local)
        try:
            yield built, sandbox, db
        finally:
            built.stop_all()
            db.dispose()
            client.flushdb()
            client.close()


def test_the_compose_layout_completes_a_campaign_and_a_realtime_event(
    layout: tuple[Layout, Any, Database],
) -> None:
    procs, sandbox, db = layout
    # Given the one-shot migration, then every long-running service of the compose file
    migrated = procs.run_once("migrate")
    assert migrated.returncode == 0, migrated.stderr.decode()[-2000:]
    long_running = [
        name
        for name, spec in procs.spec["services"].items()
        if spec.get("command", [""])[0] == "passsync" and name != "migrate"
    ]
    assert sorted(long_running) == ["api", "beat", "worker-bulk", "worker-realtime"]
    for service in long_running:
        procs.start(service)
    for service in long_running:
        procs.wait_for(lambda s=service: procs.health(s) == 0, f"{service} healthy", 90)

    # When a campaign of 40 recipients starts and a customer event arrives at the receiver
    settings = load_settings(database_url=db.url)
    rows = "customer_id,first_name,tier\n" + "".join(f"k-{i},N{i},gold\n" for i in range(40))
    with db.session() as session:
        campaign = create_campaign(
            session, CampaignSpec(name="compose"), compile_rules(settings.sync)
        )
        import_rows(session, campaign.id, read_csv(io.StringIO(rows)), batch_rows=100)
        start(session, campaign.id)
        campaign_id = campaign.id
    api = f"http://127.0.0.1:{procs.local['API_PORT']}"
    answer = httpx.post(f"{api}/webhooks/crm", **signed(event_body("rt-1", customer="vip")))
    assert answer.status_code == 202, answer.text

    # Then both complete: the bulk worker took the campaign's chunks, realtime the event
    def campaign_done() -> bool:
        with db.session() as session:
            return progress(session, campaign_id).status == "completed"

    def event_handled() -> bool:
        with db.sessions() as session:
            found = session.scalar(
                select(InboundEvent.status).where(InboundEvent.event_id == "rt-1")
            )
            return found == "handled"

    procs.wait_for(event_handled, "the realtime event handled", 60)
    procs.wait_for(campaign_done, "the campaign completed", 120)
    ids = sorted(p["userProvidedId"] for p in live_passes(sandbox))
    assert ids == sorted([f"passsync-loyalty-k-{i}" for i in range(40)] + ["passsync-loyalty-vip"])

    # And each service's metrics endpoint answers (the API's and each worker's)
    assert "passsync_webhook_requests_total" in httpx.get(f"{api}/metrics").text

    def scrape(service: str) -> str:
        return httpx.get(f"http://127.0.0.1:{procs.metrics_ports[service]}/metrics").text

    created = r'passsync_provider_calls_total\{account="[^"]+",action="create_pass",'
    assert re.search(created + r'status_class="2xx"\} 40\.0', scrape("worker-bulk"))
    assert 'passsync_events_processed_total{outcome="created"} 1.0' in scrape("worker-realtime")

    # And every health check passes while its process lives and fails once it is stopped
    for service in long_running:
        assert procs.health(service) == 0, service
    heartbeat = procs.workdir / "beat" / "beat-heartbeat"
    before = heartbeat.stat().st_mtime
    procs.wait_for(lambda: heartbeat.stat().st_mtime > before, "beat's heartbeat advancing", 10)
    for service in long_running:
        procs.stop(service)
    # A stopped beat writes no more heartbeats: age the last one past the check's bound
    # (--max-age 30) instead of waiting half a minute.
    stale = time.time() - 31
    os.utime(heartbeat, (stale, stale))
    for service in long_running:
        assert procs.health(service) == 1, service
