"""`python -m bench.engine`: passsync's engine against the Celery task a team writes by hand.

One script, one run, same machine (Postgres, Redis, the sandbox as its own process, unlimited,
at each `--latencies` value in ms):

- baseline: `bench.engine_baseline`, one Celery task per event (check, then create or
  update, httpx, acks_late), one worker with 2 pool processes; no ledger, no exactly-once;
- ledger: passsync from the ledger: the events are inserted into the inbound ledger directly
  and dispatched as the receiver does after its commit; `passsync worker`, 2 pool processes;
- receiver: passsync end to end: signed webhooks (one event each, 16 connections) to
  `passsync api`, then the same workers.

Each runs `--customers` new customers (one create each), then one update for each of them.
Per phase: events/s (first event sent or dispatched -> the last one applied), provider
calls/s, CPU milliseconds per event of the workers (their process trees), the database (the
backends of the benchmark's database) and the broker (Redis INFO cpu; the limiter lives
there too), and events/s as a ratio to the baseline's in the same run. The receiver's own
CPU is shown apart (api). The sandbox's CPU is the provider's and is not counted.

Environment: PASSSYNC_BENCH_PG (admin URL; the benchmark creates and drops its own
database), PASSSYNC_BENCH_REDIS (default redis://127.0.0.1:6379/13, flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import redis

from bench.common import admin_url, free_port, fresh_database
from worker.providers import registry

ACCOUNT_ENV = f"PASSSYNC_PROVIDERS__{registry.default_kind().upper()}__"

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "passsync_bench_engine"
SANDBOX_KEY = "bench-engine-key"
SECRET = "whsec_" + base64.b64encode(b"bench-engine-secret-0123456789abc").decode()
MODES = ("baseline", "ledger", "receiver")


@dataclass
class Phase:
    mode: str
    latency_ms: int
    phase: str  # "create" or "update"
    events: int
    seconds: float
    events_per_second: float
    provider_calls: int
    calls_per_second: float
    cpu_ms_workers: float
    cpu_ms_database: float
    cpu_ms_broker: float
    cpu_ms_api: float
    ratio_to_baseline: float | None = None


def broker_url() -> str:
    url = os.environ.get("PASSSYNC_BENCH_REDIS", "redis://127.0.0.1:6379/13")
    redis.Redis.from_url(url).flushdb()
    return url


# -- processes and CPU ------------------------------------------------------------------------


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[psutil.Process]:
    """A child in its own session, terminated (its whole group) on the way out."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    try:
        yield psutil.Process(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def tree_cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = p.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


class Meters:
    """CPU seconds of the workers, the api, this benchmark's database backends and Redis."""

    def __init__(
        self, workers: psutil.Process, api: psutil.Process | None, broker: redis.Redis
    ) -> None:
        self.workers, self.api, self.broker = workers, api, broker
        self._seen: dict[int, float] = {}  # database backends: pid -> last CPU seconds

    def database(self) -> float:
        """Backends of our database, including ones that ended since the last reading."""
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            pids = [
                int(row[0])
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (DB_NAME,)
                )
            ]
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                self._seen[pid] = times.user + times.system
        return sum(self._seen.values())

    def redis(self) -> float:
        info = self.broker.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def read(self) -> tuple[float, float, float, float]:
        return tree_cpu(self.workers), self.database(), self.redis(), tree_cpu(self.api)


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


# -- events -----------------------------------------------------------------------------------


def customer_event(i: int, phase: str, at: datetime) -> dict[str, Any]:
    points = 100 if phase == "create" else 250
    return {
        "id": f"{phase}-{i}",
        "type": "customer.created" if phase == "create" else "customer.updated",
        "occurred_at": at.isoformat(),
        "customer": {
            "id": f"c{i}",
            "email": f"c{i}@example.test",
            "first_name": "Ada",
            "last_name": f"N{i}",
            "attributes": {"tier": "gold", "points": points},
        },
    }


def baseline_fields(event: dict[str, Any]) -> dict[str, Any]:
    customer = event["customer"]
    return {
        "firstName": customer["first_name"],
        "lastName": customer["last_name"],
        "email": customer["email"],
        "tier": customer["attributes"]["tier"],
        "points": customer["attributes"]["points"],
    }


def phase_time(phase: str) -> datetime:
    # Updates happen after creates: the engine orders by occurred_at.
    return datetime.now(UTC) - timedelta(seconds=60 if phase == "create" else 30)


# -- one run per (mode, latency) ----------------------------------------------------------------


class Run:
    def __init__(self, mode: str, latency: int, args: argparse.Namespace, tmp: Path) -> None:
        self.mode, self.latency, self.args, self.tmp = mode, latency, args, tmp
        self.port = free_port()
        self.api_port = free_port()
        self.broker = broker_url()
        self.db_url = fresh_database(DB_NAME) if mode != "baseline" else ""
        self.logdir = tmp / f"{mode}-{latency}"
        self.logdir.mkdir()
        self.env = self._env()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PASSSYNC_")}
        (self.tmp / "none.yaml").write_text("{}\n")
        env.update(
            {
                "PASSSYNC_CONFIG": str(ROOT / "config.yaml"),
                "PASSSYNC_DATABASE_URL": self.db_url or "sqlite:///unused.db",
                "PASSSYNC_BROKER_URL": self.broker,
                "PASSSYNC_DATA_DIR": str(self.tmp / "data"),
                "PASSSYNC_LOG_LEVEL": "WARNING",
                # The config's account of the first registered platform, at the sandbox.
                f"{ACCOUNT_ENV}BASE_URL": f"http://127.0.0.1:{self.port}",
                f"{ACCOUNT_ENV}API_KEY": SANDBOX_KEY,
                "PASSSYNC_SANDBOX__API_KEY": SANDBOX_KEY,
                "PASSSYNC_SANDBOX__PORT": str(self.port),
                "PASSSYNC_SANDBOX__LATENCY_MS": str(self.latency),
                # The sandbox is unlimited; the shared limiter stays on (its cost is counted)
                # with a budget that never paces.
                "PASSSYNC_RATELIMIT__PER_MINUTE": "10000000",
                "PASSSYNC_RATELIMIT__BURST": "100000",
                "PASSSYNC_SOURCES__CRM__SECRET": SECRET,
                "PASSSYNC_API__PORT": str(self.api_port),
                "PASSSYNC_API__WORKERS": "1",
                "PASSSYNC_CELERY__CONCURRENCY": str(self.args.processes),
                "BENCH_BASELINE_BROKER": self.broker,
                "BENCH_BASELINE_PROVIDER": f"http://127.0.0.1:{self.port}",
                "BENCH_BASELINE_KEY": SANDBOX_KEY,
            }
        )
        return env

    def execute(self) -> list[Phase]:
        with self.stack() as (workers, api):
            return self._phases(workers, api)

    @contextmanager
    def stack(self) -> Iterator[tuple[psutil.Process, psutil.Process | None]]:
        """The sandbox, the workers and (receiver mode) the api, up and answering."""
        cli = [sys.executable, "-m", "worker.cli"]
        with process([*cli, "sandbox"], self.env, self.logdir / "sandbox.log"):
            wait_http(f"http://127.0.0.1:{self.port}/_sandbox/stats")
            if self.mode == "baseline":
                self.env["BENCH_BASELINE_TEMPLATE"] = self._template_id("Loyalty Card")
                worker_cmd = [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "bench.engine_baseline",
                    "worker",
                    f"--concurrency={self.args.processes}",
                    "--loglevel=WARNING",
                    "-O",
                    "fair",
                    "--without-gossip",
                    "--without-mingle",
                ]
            else:
                worker_cmd = [*cli, "worker", f"--concurrency={self.args.processes}"]
            with process(worker_cmd, self.env, self.logdir / "worker.log") as workers:
                if self.mode != "receiver":
                    yield workers, None
                    return
                with process([*cli, "api"], self.env, self.logdir / "api.log") as api:
                    wait_http(f"http://127.0.0.1:{self.api_port}/healthz")
                    yield workers, api

    def quiet_latencies(self, count: int, gap: float) -> list[float]:
        """One event at a time (new customers, then updates of customers quiet for longer
        than the coalescing window): seconds from sending its webhook to the ledger's
        handled_at, which is written after the provider's answer."""
        from sqlalchemy import select

        from worker.inbound.models import InboundEvent

        latencies: list[float] = []
        time.sleep(3)  # pool processes up
        self._warm_up()
        for i in range(count):
            phase = "create" if i < count // 2 else "update"
            event = customer_event(i % max(count // 2, 1), phase, phase_time(phase))
            event["id"] = f"quiet-{i}"
            sent = datetime.now(UTC)
            self._send([event])
            handled = None
            deadline = time.monotonic() + 30
            while handled is None and time.monotonic() < deadline:
                time.sleep(0.005)
                with self._database().session() as session:
                    handled = session.scalar(
                        select(InboundEvent.handled_at).where(InboundEvent.event_id == event["id"])
                    )
            latencies.append((handled - sent).total_seconds() if handled else float("inf"))
            time.sleep(gap)
        return latencies

    def _template_id(self, name: str) -> str:
        answer = httpx.get(
            f"http://127.0.0.1:{self.port}/api/pass-template",
            headers={"Authorization": SANDBOX_KEY},
        ).json()
        return str(next(t["identifier"] for t in answer if t["name"] == name))

    def _phases(self, workers: psutil.Process, api: psutil.Process | None) -> list[Phase]:
        time.sleep(3)  # pool processes up
        meters = Meters(workers, api, redis.Redis.from_url(self.broker))
        self._warm_up()
        return [self._phase(phase, meters) for phase in ("create", "update")]

    def _warm_up(self) -> None:
        """One event through every path first, so no run pays for imports and connections."""
        n = self.args.customers
        events = [customer_event(n + i, "create", phase_time("create")) for i in range(4)]
        self._send(events)
        self._wait(lambda: self._applied("create") >= 4, 60)

    def _phase(self, phase: str, meters: Meters) -> Phase:
        n = self.args.customers
        events = [customer_event(i, phase, phase_time(phase)) for i in range(n)]
        prepared = self._prepare(events)
        before_calls = self._calls()
        before_done = self._applied(phase)
        cpu0 = meters.read()
        started = time.perf_counter()
        self._send(events, prepared)
        self._wait(lambda: self._applied(phase) - before_done >= n, self.args.timeout)
        seconds = time.perf_counter() - started
        cpu1 = meters.read()
        calls = self._calls() - before_calls
        workers, database, broker, api = (
            (b - a) * 1000 / n for a, b in zip(cpu0, cpu1, strict=True)
        )
        return Phase(
            mode=self.mode,
            latency_ms=self.latency,
            phase=phase,
            events=n,
            seconds=round(seconds, 2),
            events_per_second=round(n / seconds, 1),
            provider_calls=calls,
            calls_per_second=round(calls / seconds, 1),
            cpu_ms_workers=round(workers, 2),
            cpu_ms_database=round(database, 2),
            cpu_ms_broker=round(broker, 2),
            cpu_ms_api=round(api, 2),
        )

    # -- how each mode sends, and how it knows an event was applied ----------------------------

    def _prepare(self, events: list[dict[str, Any]]) -> Any:
        """What must exist before the clock starts: ledger rows (ledger mode) or nothing."""
        if self.mode != "ledger":
            return None
        from worker.inbound.ledger import record_events
        from worker.inbound.schema import CanonicalEvent

        ids: list[int] = []
        with self._database().session() as session:
            for start in range(0, len(events), 1000):
                part = [CanonicalEvent.model_validate(e) for e in events[start : start + 1000]]
                ids += record_events(session, "crm", part).accepted_ids
                session.commit()
        return ids

    def _send(self, events: list[dict[str, Any]], prepared: Any = None) -> None:
        if self.mode == "baseline":
            from bench.engine_baseline import app, sync_customer

            app.conf.broker_url = self.broker
            # A connection of its own: configure() of a passsync run resets kombu's pools.
            with app.connection_for_write() as conn, app.amqp.Producer(conn) as producer:
                for event in events:
                    sync_customer.apply_async(
                        args=[event["customer"]["id"], baseline_fields(event)], producer=producer
                    )
        elif self.mode == "ledger":
            ids = prepared if prepared is not None else self._prepare(events)
            self._dispatch(ids)
        else:
            asyncio.run(post_webhooks(self.api_port, events, connections=16))

    def _dispatch(self, ids: list[int]) -> None:
        from worker.config import load_settings
        from worker.tasks.app import configure
        from worker.tasks.jobs import dispatch_events

        os.environ.update({k: v for k, v in self.env.items() if k.startswith("PASSSYNC_")})
        configure(load_settings())
        # As the receiver does after each commit: groups of ids, one message per group.
        for start in range(0, len(ids), 100):
            dispatch_events(ids[start : start + 100])

    def _database(self) -> Any:
        from worker.db import Database

        if not hasattr(self, "_db"):
            self._db = Database(self.db_url, pool_size=1)
        return self._db

    def _applied(self, phase: str) -> int:
        if self.mode == "baseline":
            stats = httpx.get(f"http://127.0.0.1:{self.port}/_sandbox/stats").json()
            return int(
                stats["creates"] if phase == "create" else stats["writes"] - stats["creates"]
            )
        from sqlalchemy import func, select

        from worker.inbound.models import EventStatus, InboundEvent

        with self._database().session() as session:
            return int(
                session.scalar(
                    select(func.count()).where(
                        InboundEvent.status == EventStatus.HANDLED,
                        InboundEvent.event_id.like(f"{phase}-%"),
                    )
                )
                or 0
            )

    def _calls(self) -> int:
        stats = httpx.get(f"http://127.0.0.1:{self.port}/_sandbox/stats").json()
        return sum(n for name, n in stats["calls"].items() if "pass-template" not in name)

    @staticmethod
    def _wait(done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError("the run did not finish within --timeout")
            time.sleep(0.1)


async def post_webhooks(port: int, events: list[dict[str, Any]], *, connections: int) -> None:
    """Each event as its own signed request, `connections` at a time, all answered 202."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:

        async def sender() -> None:
            while not queue.empty():
                event = queue.get_nowait()
                raw = json.dumps(event).encode()
                msg_id, ts = f"msg_{event['id']}", str(int(time.time()))
                mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + raw, hashlib.sha256).digest()
                answer = await client.post(
                    "/webhooks/crm",
                    content=raw,
                    headers={
                        "content-type": "application/json",
                        "webhook-id": msg_id,
                        "webhook-timestamp": ts,
                        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
                    },
                )
                if answer.status_code != 202:
                    raise RuntimeError(f"the receiver answered {answer.status_code}")

        await asyncio.gather(*(sender() for _ in range(connections)))


# -- report -----------------------------------------------------------------------------------


def with_ratios(phases: list[Phase]) -> list[Phase]:
    base = {(p.latency_ms, p.phase): p.events_per_second for p in phases if p.mode == "baseline"}
    for p in phases:
        reference = base.get((p.latency_ms, p.phase))
        p.ratio_to_baseline = round(p.events_per_second / reference, 2) if reference else None
    return phases


def table(phases: list[Phase]) -> str:
    head = (
        f"{'mode':<10}{'latency':>8}{'phase':>8}{'events/s':>10}{'calls/s':>9}"
        f"{'CPU ms/event: workers':>23}{'db':>7}{'broker':>8}{'api':>7}{'x baseline':>12}"
    )
    lines = [head]
    for p in phases:
        ratio = "-" if p.ratio_to_baseline is None else f"{p.ratio_to_baseline:.2f}"
        lines.append(
            f"{p.mode:<10}{p.latency_ms:>6}ms{p.phase:>8}{p.events_per_second:>10.1f}"
            f"{p.calls_per_second:>9.1f}{p.cpu_ms_workers:>23.2f}{p.cpu_ms_database:>7.2f}"
            f"{p.cpu_ms_broker:>8.2f}{p.cpu_ms_api:>7.2f}{ratio:>12}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--latencies", default="0,20", help="sandbox latency values, ms")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--processes", type=int, default=2, help="worker pool processes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per phase, seconds")
    parser.add_argument("--json", action="store_true", help="the rows as JSON, too")
    args = parser.parse_args(argv)
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as name:
        for latency in (int(v) for v in args.latencies.split(",")):
            for mode in args.modes.split(","):
                done = Run(mode, latency, args, Path(name)).execute()
                phases += done
                lines = table(with_ratios(list(phases))).splitlines()
                print("\n".join(lines[-len(done) :]), flush=True)
    print(f"\n{args.customers} customers per phase, {args.processes} worker processes")
    print(table(with_ratios(phases)))
    if args.json:
        print(json.dumps([asdict(p) for p in phases], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
