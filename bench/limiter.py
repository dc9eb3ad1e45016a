"""`python -m bench.limiter`: a campaign against a rate-limited sandbox, passsync's shared
limiter versus Celery's built-in per-task `rate_limit` set to the same limit.

The same script runs both modes on this machine (Postgres, Redis, the sandbox as its own
process, `--workers` worker processes serving both queues, and beat):

- passsync: the shared Redis limiter at the provider's limit, campaign chunks of 100;
- celery: the limiter off; one task per recipient (chunk size 1) and Celery's
  `rate_limit` on the campaign task and on process_event, both at the provider's limit
  (Celery applies it per worker process, as documented).

While the campaign runs, a realtime customer event is injected every `--realtime-every`
seconds (recorded in the ledger and published to the realtime queue, as the receiver does);
its latency is ledger received_at -> handled_at (it includes the default 0.5 s coalescing
wait). Reported per mode: utilization (accepted calls per second / the limit), 429s as a
share of all calls sent, total campaign time, realtime p50/p99.

20,000 passes at a typical platform limit of 600/min would take 33 minutes per mode: the
default runs the
sandbox (and both limiters) at 2,400/min, the most a 2-core machine carrying the sandbox,
Postgres, Redis and both workers sustains (at 6,000/min the CPU, not the limit, is the
bottleneck and utilization says nothing about the limiter); the ratios are what matter.
Worker memory (both workers' process trees) and the broker's depth (queued and unacknowledged
messages) are sampled every `--sample-every` seconds: flat memory and a bounded queue over a
long campaign (`--passes 1000000 --timeout 600` shows them on a million recipients without
waiting for the end).

`--import-rows N` instead measures `passsync campaign create` on CSV files of N/10 and N
recipients (each its own process): seconds, rows/s and peak RSS; flat memory is a ratio of
the two peaks near 1.

Environment: PASSSYNC_BENCH_PG (admin URL, default postgresql://postgres@127.0.0.1:5432/test;
the benchmark creates and drops its own database), PASSSYNC_BENCH_LIMITER_REDIS (default
redis://127.0.0.1:6379/11, flushed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.common import free_port, fresh_database
from worker.providers import registry

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "passsync_bench_limiter"
IMPORT_DB_NAME = "passsync_bench_import"
SANDBOX_KEY = "bench-limiter-key"
# The platform whose sandbox the bench runs: PASSSYNC_BENCH_KIND, else the first registered.
KIND = os.environ.get("PASSSYNC_BENCH_KIND", "") or registry.default_kind()


@dataclass
class Result:
    mode: str
    limit_per_minute: int
    start_per_minute: int
    passes: int
    seconds: float
    calls_sent: int
    calls_accepted: int
    rate_limited: int
    utilization: float
    share_429: float
    realtime_events: int
    realtime_p50_s: float | None
    realtime_p99_s: float | None
    completed: bool
    done: int
    worker_rss_mb_first: float | None
    worker_rss_mb_last: float | None
    worker_rss_mb_max: float | None
    # Growth over the second half of the run: warm-up (imports, caches, pools) is over by
    # then, so flat memory shows as a growth near 0 however long the campaign.
    worker_rss_mb_second_half_growth: float | None
    broker_max_messages: int
    worker_rss_mb_samples: list[float]
    utilization_second_half: float | None
    share_429_second_half: float | None
    limiter_rate_per_minute_last: float | None
    # Once a second: seconds since the start, calls accepted, 429s, the limiter's rate/min.
    call_samples: list[tuple[float, int, int, float | None]]


def redis_url() -> str:
    url = os.environ.get("PASSSYNC_BENCH_LIMITER_REDIS", "redis://127.0.0.1:6379/11")
    redis.Redis.from_url(url).flushdb()
    return url


@contextmanager
def processes(logdir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def spawn(
    procs: list[subprocess.Popen[bytes]], args: list[str], env: dict[str, str], log: Path
) -> None:
    with log.open("ab") as out:
        procs.append(
            subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        )


def account_env(kind: str, port: int, limit: int) -> dict[str, str]:
    """One account of `kind` (named after it) pointed at its sandbox on `port`."""
    kit = registry.get_kind(kind).sandbox
    assert kit is not None, f"{kind} has no sandbox"
    prefix = f"PASSSYNC_PROVIDERS__{kind.upper()}__"
    sandbox = sandbox_settings(kind, port, limit)
    env = {prefix + "KIND": kind, "PASSSYNC_SYNC__DEFAULT_ACCOUNT": kind}
    env |= {
        prefix + "SANDBOX__PORT": str(port),
        prefix + "SANDBOX__RATE_LIMIT_PER_MINUTE": str(limit),
    }
    if "api_key" in type(sandbox).model_fields:
        env[prefix + "SANDBOX__API_KEY"] = SANDBOX_KEY
    overrides = kit.account_overrides(sandbox, f"http://127.0.0.1:{port}")
    return env | {prefix + key.upper(): value for key, value in overrides.items()}


def sandbox_settings(kind: str, port: int, limit: int) -> Any:
    kit = registry.get_kind(kind).sandbox
    assert kit is not None
    values: dict[str, Any] = {"port": port, "rate_limit_per_minute": limit}
    if "api_key" in kit.settings_model.model_fields:
        values["api_key"] = SANDBOX_KEY
    return kit.settings_model(**values)


def base_env(db_url: str, broker: str, port: int, limit: int, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSSYNC_")}
    env.update(
        {
            "PASSSYNC_CONFIG": str(tmp / "none.yaml"),
            "PASSSYNC_DATABASE_URL": db_url,
            "PASSSYNC_BROKER_URL": broker,
            "PASSSYNC_DATA_DIR": str(tmp / "data"),
            "PASSSYNC_LOG_LEVEL": "WARNING",
            **account_env(KIND, port, limit),
            "PASSSYNC_RATELIMIT__PER_MINUTE": str(limit),
            "PASSSYNC_AUDIT__RETENTION_DAYS": "1",
        }
    )
    (tmp / "none.yaml").write_text("{}\n")
    return env


def mode_env(mode: str, env: dict[str, str], workers: int, concurrency: int) -> dict[str, str]:
    env = dict(env)
    if mode.startswith("adaptive"):
        # The sandbox keeps the real limit; passsync is told a start 2x too low or too high.
        env["PASSSYNC_RATELIMIT__MODE"] = "adaptive"
        env["PASSSYNC_RATELIMIT__PER_MINUTE"] = str(start_per_minute(mode, env))
    if mode == "celery":
        env["PASSSYNC_RATELIMIT__ENABLED"] = "false"
        env["PASSSYNC_CAMPAIGNS__CHUNK_SIZE"] = "1"
        # Enough single-recipient tasks queued to keep every pool process busy.
        env["PASSSYNC_CAMPAIGNS__MAX_QUEUED_CHUNKS"] = str(workers * concurrency * 25)
    return env


def start_per_minute(mode: str, env: dict[str, str]) -> int:
    limit = int(env["PASSSYNC_SANDBOX__RATE_LIMIT_PER_MINUTE"])
    return {"adaptive-low": limit // 2, "adaptive-high": limit * 2}.get(mode, limit)


def run_mode(mode: str, args: argparse.Namespace, tmp: Path) -> Result:
    db_url, broker, port = fresh_database(DB_NAME), redis_url(), free_port()
    env = mode_env(
        mode, base_env(db_url, broker, port, args.limit, tmp), args.workers, args.concurrency
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith("PASSSYNC_")})
    from worker.config import load_settings
    from worker.db import Database
    from worker.ratelimit.provider import build_limiter
    from worker.tasks.app import configure

    settings = load_settings()
    configure(settings)
    db = Database(db_url, pool_size=2)
    kit = registry.get_kind(KIND).sandbox
    assert kit is not None and kit.attach is not None, f"{KIND}'s sandbox cannot be attached"
    sandbox = kit.attach(f"http://127.0.0.1:{port}", sandbox_settings(KIND, port, args.limit))
    logdir = tmp / mode
    logdir.mkdir(exist_ok=True)
    with processes(logdir) as procs:
        cli = [sys.executable, "-m", "worker.cli"]
        spawn(procs, [*cli, "sandbox", "--account", KIND], env, logdir / "sandbox.log")
        wait_http(sandbox)
        for i in range(args.workers):
            worker = worker_command(mode, args)
            spawn(procs, worker, env, logdir / f"worker-{i}.log")
        spawn(procs, [*cli, "beat"], env, logdir / "beat.log")
        time.sleep(3)  # workers up
        sampler = Sampler(
            [psutil.Process(p.pid) for p in procs[1 : 1 + args.workers]],
            redis.Redis.from_url(broker),
            sandbox,
            build_limiter(settings),
        )
        return measure(mode, args, settings, db, sandbox, sampler=sampler, tmp=tmp)


class Sampler:
    """Worker memory (each worker's process tree, summed) and broker depth over the run."""

    QUEUES = ("realtime", "bulk")

    def __init__(
        self, workers: list[psutil.Process], broker: redis.Redis, sandbox: Any, limiter: Any
    ) -> None:
        self.workers = workers
        self.broker = broker
        self.sandbox = sandbox
        self.limiter = limiter
        self.rss_mb: list[float] = []
        self.broker_messages: list[int] = []
        # (monotonic seconds, calls accepted by the sandbox, 429s, limiter rate per minute)
        self.calls: list[tuple[float, int, int, float | None]] = []

    def sample_calls(self) -> None:
        stats = self.sandbox.stats()
        sent, limited = sum(stats["calls"].values()), stats["rate_limited"]
        rate = self.limiter.state().rate_per_second * 60 if self.limiter is not None else None
        self.calls.append((time.monotonic(), sent - limited, limited, rate))

    def second_half_utilization(self, limit: int) -> tuple[float | None, float | None]:
        """Accepted calls per second over the second half of the run / the limit, and the
        429 share of that half: the steady state, without the provider's initial burst."""
        if len(self.calls) < 4:
            return None, None
        (t0, a0, l0, _), (t1, a1, l1, _) = self.calls[len(self.calls) // 2], self.calls[-1]
        accepted, limited = a1 - a0, l1 - l0
        share = limited / (accepted + limited) if accepted + limited else 0.0
        return round(accepted / (t1 - t0) / (limit / 60), 3), round(share, 4)

    def sample(self) -> None:
        total = 0
        for proc in self.workers:
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
        self.rss_mb.append(round(total / 2**20, 1))
        # Kombu keeps one list per queue and priority step ("bulk", "bulk\x06\x163", ...)
        # plus the messages delivered but not yet acknowledged.
        depth = int(self.broker.hlen("unacked"))
        for queue in self.QUEUES:
            for key in self.broker.scan_iter(match=f"{queue}*", count=100):
                if self.broker.type(key) == b"list":
                    depth += int(self.broker.llen(key))
        self.broker_messages.append(depth)

    def second_half_growth(self) -> float | None:
        if len(self.rss_mb) < 4:
            return None
        return round(self.rss_mb[-1] - self.rss_mb[len(self.rss_mb) // 2], 1)


def worker_command(mode: str, args: argparse.Namespace) -> list[str]:
    common = [f"--concurrency={args.concurrency}", "--queues=realtime,bulk"]
    if mode == "celery":
        return [sys.executable, "-m", "bench.limiter", "celery-worker", str(args.limit), *common]
    return [sys.executable, "-m", "worker.cli", "worker", *common]


def celery_worker(limit: int, extra: list[str]) -> None:
    """`passsync worker` with Celery's own per-task rate_limit instead of the shared limiter."""
    from worker.config import load_settings
    from worker.tasks.app import configure

    settings = load_settings()
    celery = configure(settings)
    celery.conf.task_annotations = {
        "passsync.campaign_chunk": {"rate_limit": f"{limit}/m"},
        "passsync.process_event": {"rate_limit": f"{limit}/m"},
    }
    celery.worker_main(
        [
            "worker",
            *extra,
            "--loglevel=WARNING",
            "-O",
            "fair",
            "--without-gossip",
            "--without-mingle",
            "--hostname=bench-%h-" + str(os.getpid()),
        ]
    )


def wait_http(sandbox: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sandbox.stats()
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("the sandbox did not start")


def measure(
    mode: str,
    args: argparse.Namespace,
    settings: Any,
    db: Any,
    sandbox: Any,
    *,
    sampler: Sampler,
    tmp: Path,
) -> Result:
    from worker.campaigns.service import get_campaign

    campaign_id = create_campaign(db, settings, args.passes, tmp)
    realtime: list[int] = []
    next_event = time.monotonic() + args.realtime_every
    next_sample = next_calls = time.monotonic()
    deadline = time.monotonic() + args.timeout
    status = "running"
    while time.monotonic() < deadline:
        with db.session() as session:
            status = get_campaign(session, campaign_id).status
        if status == "completed":
            break
        if time.monotonic() >= next_event:
            realtime.append(inject_realtime(db, len(realtime)))
            next_event += args.realtime_every
        if time.monotonic() >= next_sample:
            sampler.sample()
            next_sample += args.sample_every
        if time.monotonic() >= next_calls:
            sampler.sample_calls()
            next_calls += 1.0
        time.sleep(0.2)
    settle(db, realtime)
    stats = sandbox.stats()
    return summarize(
        mode,
        args,
        db=db,
        campaign_id=campaign_id,
        stats=stats,
        realtime=realtime,
        completed=status == "completed",
        sampler=sampler,
    )


def settle(db: Any, realtime: list[int], timeout: float = 30) -> None:
    """Give the realtime events injected last the time to be applied."""
    from sqlalchemy import func, select

    from worker.inbound.models import InboundEvent

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            left = session.scalar(
                select(func.count()).where(
                    InboundEvent.id.in_(realtime), InboundEvent.handled_at.is_(None)
                )
            )
        if not left:
            return
        time.sleep(0.2)


def create_campaign(db: Any, settings: Any, passes: int, tmp: Path) -> int:
    """A campaign of `passes` recipients, streamed from a CSV file as `campaign create` does."""
    from worker.campaigns.importer import import_rows, read_csv
    from worker.campaigns.service import CampaignSpec, create_campaign, start
    from worker.sync.rules import compile_rules

    path = tmp / "campaign.csv"
    with path.open("w") as out:
        out.write("customer_id,first_name,tier\n")
        for i in range(passes):
            out.write(f"b-{i},Name{i},gold\n")
    with db.session() as session, path.open(newline="") as stream:
        campaign = create_campaign(
            session, CampaignSpec(name="bench"), compile_rules(settings.sync)
        )
        import_rows(
            session, campaign.id, read_csv(stream), batch_rows=2000, on_batch=session.commit
        )
        start(session, campaign.id)
        return int(campaign.id)


def inject_realtime(db: Any, n: int) -> int:
    from worker.inbound.ledger import record_events
    from worker.inbound.schema import CanonicalEvent
    from worker.tasks.jobs import enqueue_events

    event = CanonicalEvent.model_validate(
        {
            "id": f"rt-{n}",
            "type": "customer.updated",
            "occurred_at": datetime.now(UTC).isoformat(),
            "customer": {"id": f"rt-{n}", "first_name": "Live", "attributes": {"tier": "vip"}},
        }
    )
    with db.session() as session:
        (ledger_id,) = record_events(session, "crm", [event]).accepted_ids
    enqueue_events([ledger_id])
    return ledger_id


def summarize(
    mode: str,
    args: argparse.Namespace,
    *,
    db: Any,
    campaign_id: int,
    stats: dict[str, Any],
    realtime: list[int],
    completed: bool,
    sampler: Sampler,
) -> Result:
    from sqlalchemy import select

    from worker.campaigns.service import get_campaign, progress
    from worker.inbound.models import InboundEvent

    with db.session() as session:
        campaign = get_campaign(session, campaign_id)
        end = campaign.finished_at or datetime.now(UTC)
        seconds = (end - (campaign.started_at or campaign.created_at)).total_seconds()
        counts = progress(session, campaign_id)
        campaign_done = counts.done + counts.skipped + counts.failed
        rows = session.execute(
            select(InboundEvent.received_at, InboundEvent.handled_at).where(
                InboundEvent.id.in_(realtime)
            )
        ).all()
    latencies = sorted(
        (handled - received).total_seconds() for received, handled in rows if handled
    )
    latencies += [float("inf")] * (len(realtime) - len(latencies))  # never applied
    sent = sum(stats["calls"].values())
    limited = stats["rate_limited"]
    util2, share2 = sampler.second_half_utilization(args.limit)
    accepted = sent - limited
    return Result(
        mode=mode,
        limit_per_minute=args.limit,
        start_per_minute=start_per_minute(
            mode, {"PASSSYNC_SANDBOX__RATE_LIMIT_PER_MINUTE": str(args.limit)}
        ),
        passes=args.passes,
        seconds=round(seconds, 1),
        calls_sent=sent,
        calls_accepted=accepted,
        rate_limited=limited,
        utilization=round(accepted / seconds / (args.limit / 60), 3) if seconds else 0.0,
        share_429=round(limited / sent, 4) if sent else 0.0,
        realtime_events=len(realtime),
        realtime_p50_s=_pct(latencies, 0.50),
        realtime_p99_s=_pct(latencies, 0.99),
        completed=completed,
        done=campaign_done,
        worker_rss_mb_first=sampler.rss_mb[0] if sampler.rss_mb else None,
        worker_rss_mb_last=sampler.rss_mb[-1] if sampler.rss_mb else None,
        worker_rss_mb_max=max(sampler.rss_mb, default=None),
        worker_rss_mb_second_half_growth=sampler.second_half_growth(),
        broker_max_messages=max(sampler.broker_messages, default=0),
        worker_rss_mb_samples=sampler.rss_mb,
        utilization_second_half=util2,
        share_429_second_half=share2,
        limiter_rate_per_minute_last=sampler.calls[-1][3] if sampler.calls else None,
        call_samples=[
            (round(t - sampler.calls[0][0], 1), a, n, None if r is None else round(r))
            for t, a, n, r in sampler.calls
        ],
    )


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 3)


def import_benchmark(rows: int, tmp: Path) -> dict[str, Any]:
    """`passsync campaign create FILE` on a CSV of rows/10 then `rows` recipients, each in its
    own process: seconds and the process's peak RSS. Flat memory: the ratio of the peaks.
    A one-row file first gives the command's start-up (interpreter, imports, settings,
    connecting, the campaign), so the rate past start-up is shown too."""
    startup = _import_run(1, tmp)["seconds_exact"]
    runs = [_import_run(size, tmp) for size in (max(rows // 10, 1), rows)]
    for run in runs:
        past = run.pop("seconds_exact") - startup
        run["rows_per_second_past_startup"] = round(run["rows"] / past) if past > 0 else None
    return {
        "startup_seconds": round(startup, 2),
        "runs": runs,
        "peak_rss_ratio": round(runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "copy_vs_batched": _copy_vs_batched(max(rows // 10, 1)),
    }


def _copy_vs_batched(rows: int) -> dict[str, Any]:
    """In one process, the same rows into Postgres by COPY and by the batched multi-row
    INSERT (the path before COPY, still SQLite's), alternately twice: rows/s and the ratio.
    Both read as the CLI does (`read_csv_blocks`); without COPY every row is built and
    validated one by one, as on SQLite."""
    import io

    from worker.campaigns.importer import import_rows, read_csv_blocks
    from worker.campaigns.service import CampaignSpec, create_campaign
    from worker.config import load_settings
    from worker.db import Database
    from worker.sync.rules import compile_rules

    text = "customer_id,email,first_name,tier,data.offer\n" + "".join(
        f"m-{i},m{i}@example.com,Name{i},gold,OFFER-{i % 97}\n" for i in range(rows)
    )
    db = Database(fresh_database(IMPORT_DB_NAME), pool_size=1)
    rules = compile_rules(load_settings().sync)
    best: dict[str, float] = {}
    try:
        for copy in (True, False, True, False):
            with db.session() as session:
                campaign = create_campaign(session, CampaignSpec(name="bench"), rules)
                session.commit()
                started = time.perf_counter()
                import_rows(
                    session,
                    campaign.id,
                    read_csv_blocks(io.StringIO(text)),
                    batch_rows=10_000 if copy else 2000,
                    on_batch=session.commit,
                    copy=copy,
                )
                session.commit()
                rate = rows / (time.perf_counter() - started)
            name = "copy" if copy else "batched"
            best[name] = max(best.get(name, 0.0), rate)
    finally:
        db.dispose()
    return {
        "rows": rows,
        "copy_rows_per_second": round(best["copy"]),
        "batched_rows_per_second": round(best["batched"]),
        "ratio": round(best["copy"] / best["batched"], 2),
    }


def _import_run(rows: int, tmp: Path) -> dict[str, Any]:
    from sqlalchemy import create_engine, func, select

    from worker.campaigns.models import CampaignRecipient

    db_url = fresh_database(IMPORT_DB_NAME)
    path = tmp / f"recipients-{rows}.csv"
    with path.open("w") as out:
        out.write("customer_id,email,first_name,tier,data.offer\n")
        for i in range(rows):
            out.write(f"m-{i},m{i}@example.com,Name{i},gold,OFFER-{i % 97}\n")
    env = base_env(db_url, "memory://", free_port(), 600, tmp)
    env |= {
        "PASSSYNC_TOKEN": "bench-import-token",
        "PASSSYNC_ADMIN_TOKENS__BENCH__SECRET": "bench-import-token",
        "PASSSYNC_ADMIN_TOKENS__BENCH__SCOPES": '["read", "write"]',
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "campaign", "create", str(path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"campaign create failed: {output}")
    engine = create_engine(db_url)
    with engine.connect() as conn:
        stored = conn.scalar(select(func.count()).select_from(CampaignRecipient.__table__))
    engine.dispose()
    path.unlink()
    return {
        "rows": rows,
        "stored": stored,
        "seconds": round(seconds, 1),
        "seconds_exact": seconds,
        "rows_per_second": round(rows / seconds),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def print_results(results: list[Result]) -> None:
    print(
        f"{'mode':<14}{'start/min':>10}{'util':>7}{'429 %':>8}{'util 2nd':>9}{'429% 2nd':>9}"
        f"{'rate end':>9}{'seconds':>9}{'sent':>8}{'rt p50':>8}"
        f"{'rt p99':>8}{'done':>9}{'rss MB first/last/max':>24}{'2nd half':>9}"
        f"{'broker max':>11}"
    )
    for r in results:
        rss = f"{_s(r.worker_rss_mb_first)}/{_s(r.worker_rss_mb_last)}/{_s(r.worker_rss_mb_max)}"
        print(
            f"{r.mode:<14}{r.start_per_minute:>10}{r.utilization:>7.3f}{r.share_429 * 100:>8.2f}"
            f"{_s(r.utilization_second_half):>9}{_s(_pct100(r.share_429_second_half)):>9}"
            f"{_s(r.limiter_rate_per_minute_last):>9}{r.seconds:>9.1f}"
            f"{r.calls_sent:>8}{_s(r.realtime_p50_s):>8}{_s(r.realtime_p99_s):>8}"
            f"{r.done:>8}{'' if r.completed else '*'}{rss:>24}"
            f"{_s(r.worker_rss_mb_second_half_growth):>9}{r.broker_max_messages:>11}"
        )
    if any(not r.completed for r in results):
        print("* the campaign did not complete within --timeout")


def _pct100(value: float | None) -> float | None:
    return None if value is None else value * 100


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["celery-worker"]:
        celery_worker(int(argv[1]), argv[2:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.limiter", description=__doc__)
    parser.add_argument("--passes", type=int, default=20_000)
    parser.add_argument("--limit", type=int, default=2400, help="per minute (sandbox and ours)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--realtime-every", type=float, default=2.0)
    parser.add_argument("--sample-every", type=float, default=5.0, help="memory/broker, s")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per mode, seconds")
    parser.add_argument("--modes", default="passsync,celery")
    parser.add_argument("--import-rows", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-limiter-") as name:
        tmp = Path(name)
        if args.import_rows:
            print(json.dumps(import_benchmark(args.import_rows, tmp)))
            return 0
        results = [run_mode(mode, args, tmp) for mode in args.modes.split(",")]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    print_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
