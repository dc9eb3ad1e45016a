"""`python -m bench.memory`: does a worker's memory stay flat over many campaign recipients?

Drives the real campaign path in this process, as a pool process runs it: the runtime a
worker builds from the settings (`get_runtime`: database, provider client under the shared
limiter, audit recorder), one campaign of `--warmup` + `--recipients` recipients imported
like `passsync campaign create`, chunks handed out by the dispatcher (`top_up`) and applied
by `run_chunk` in the bulk lane on behalf of the campaign (what `passsync.campaign_chunk`
does). The sandbox runs as its own process (its memory is not ours), unlimited.

Reported: RSS after the warm-up and at the end, the growth in MB and in bytes per recipient;
with `--tracemalloc` also the Python heap's growth per recipient (every traced allocation
still alive) and the sources that grew most, which tells a Python-object leak (a dict that
never forgets) from native memory (C libraries, the allocator's arenas); and the RSS after
`malloc_trim(0)` (glibc), which tells memory still in use from free memory the allocator
keeps. The issue's bar: over 100,000 recipients, RSS within 10 MB of its warm-up value.

Environment: PASSSYNC_BENCH_PG (admin URL; `--database postgres` creates and drops its own
database), PASSSYNC_BENCH_LIMITER_REDIS (the limiter's Redis, default
redis://127.0.0.1:6379/11, flushed).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import io
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from bench.common import drop_database, free_port, fresh_database
from worker.providers import registry

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "passsync_bench_memory"
KEY = "bench-memory-key"
ACCOUNT = f"PASSSYNC_PROVIDERS__{registry.default_kind().upper()}__"


def limiter_redis() -> str:
    url = os.environ.get("PASSSYNC_BENCH_LIMITER_REDIS", "redis://127.0.0.1:6379/11")
    redis.Redis.from_url(url).flushdb()
    return url


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def trimmed_rss() -> int | None:
    """RSS after glibc hands its free memory back (None where there is no glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    gc.collect()
    libc.malloc_trim(0)
    return rss()


@contextmanager
def sandbox(env: dict[str, str], port: int, log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "sandbox"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the sandbox did not start; see {log}") from None
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def environment(args: argparse.Namespace, db_url: str, port: int, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSSYNC_")}
    env.update(
        {
            "PASSSYNC_CONFIG": str(ROOT / "config.yaml"),
            "PASSSYNC_DATABASE_URL": db_url,
            "PASSSYNC_BROKER_URL": "embedded",
            "PASSSYNC_DATA_DIR": str(tmp / "data"),
            "PASSSYNC_LOG_LEVEL": "WARNING",
            f"{ACCOUNT}BASE_URL": f"http://127.0.0.1:{port}",
            f"{ACCOUNT}API_KEY": KEY,
            "PASSSYNC_SANDBOX__API_KEY": KEY,
            "PASSSYNC_SANDBOX__PORT": str(port),
            "PASSSYNC_RATELIMIT__ENABLED": "true" if args.limiter == "on" else "false",
            "PASSSYNC_RATELIMIT__PER_MINUTE": "10000000",
            "PASSSYNC_RATELIMIT__BURST": "100000",
            "PASSSYNC_METRICS__ENABLED": "true",
        }
    )
    if args.limiter == "on" or args.process:
        env["PASSSYNC_RATELIMIT__REDIS_URL"] = limiter_redis()
    if args.process:  # the broker: the limiter's Redis, on the next database index
        env["PASSSYNC_BROKER_URL"] = broker_redis(env["PASSSYNC_RATELIMIT__REDIS_URL"])
        env["PASSSYNC_RATELIMIT__KEY_PREFIX"] = "passsync:bench-memory"
    return env


def broker_redis(limiter_url: str) -> str:
    base, _, index = limiter_url.rpartition("/")
    url = f"{base}/{(int(index or 0) + 1) % 16}"
    redis.Redis.from_url(url).flushdb()
    return url


def create_campaign(total: int) -> int:
    from worker.campaigns.importer import import_rows, read_csv
    from worker.campaigns.service import CampaignSpec, create_campaign, start
    from worker.tasks.runtime import get_runtime

    runtime = get_runtime()
    lines = "".join(f"m-{i},Name{i},gold\n" for i in range(total))
    stream = io.StringIO("customer_id,first_name,tier\n" + lines)
    with runtime.db.session() as session:
        campaign = create_campaign(session, CampaignSpec(name="bench-memory"), runtime.sync.rules)
        import_rows(
            session, campaign.id, read_csv(stream), batch_rows=5000, on_batch=session.commit
        )
        start(session, campaign.id)
        return int(campaign.id)


def run_campaign(args: argparse.Namespace, campaign_id: int) -> dict[str, Any]:
    """Apply every recipient, chunk by chunk; the samples taken on the way."""
    from worker.audit import Actor
    from worker.campaigns.dispatch import top_up
    from worker.campaigns.runner import run_chunk
    from worker.ratelimit.lanes import in_lane
    from worker.tasks.runtime import get_runtime

    runtime = get_runtime()
    done, samples, marks = 0, [], {}
    started = time.monotonic()
    next_sample = args.warmup
    while True:
        with runtime.db.session() as session:
            chunks = top_up(session, campaign_id, runtime.settings.campaigns)
        if not chunks:
            break
        for chunk in chunks:
            with in_lane("bulk"), runtime.audited(Actor.campaign(campaign_id)):
                result = run_chunk(
                    runtime.db,
                    runtime.sync,
                    campaign_id,
                    chunk.chunk_id,
                    max_seconds=3600,
                    max_attempts=runtime.settings.sync.max_attempts,
                )
            done += result.finished
            if "warm" not in marks and done >= args.warmup:
                marks["warm"] = (done, rss(), time.monotonic())
                if args.tracemalloc:
                    tracemalloc.start(args.tracemalloc)
                    marks["heap"] = tracemalloc.take_snapshot()
            if done >= next_sample:
                samples.append((done, rss()))
                next_sample += args.sample_every
                print(f"  {done:>8} recipients  RSS {samples[-1][1] / 2**20:8.1f} MB", flush=True)
    end_rss = rss()
    heap_end = tracemalloc.take_snapshot() if args.tracemalloc else None
    warm_done, warm_rss, warm_at = marks["warm"]
    measured = max(done - warm_done, 1)
    report: dict[str, Any] = {
        "recipients": done,
        "measured_recipients": measured,
        "seconds": round(time.monotonic() - started, 1),
        "recipients_per_second": round(measured / (time.monotonic() - warm_at), 1),
        "warm_rss_mb": round(warm_rss / 2**20, 1),
        "end_rss_mb": round(end_rss / 2**20, 1),
        "growth_mb": round((end_rss - warm_rss) / 2**20, 2),
        "growth_bytes_per_recipient": round((end_rss - warm_rss) / measured, 1),
        "samples": samples,
    }
    if heap_end is not None:
        stats = heap_end.compare_to(marks["heap"], "traceback")
        grown = sum(s.size_diff for s in stats)
        report["python_heap_bytes_per_recipient"] = round(grown / measured, 1)
        report["top_python_growth"] = [
            {
                "bytes_per_recipient": round(s.size_diff / measured, 1),
                "where": s.traceback.format()[-2:],
            }
            for s in stats[:8]
        ]
        tracemalloc.stop()
    trimmed = trimmed_rss()
    if trimmed is not None:
        report["end_rss_after_malloc_trim_mb"] = round(trimmed / 2**20, 1)
    return report


def run_worker_process(
    args: argparse.Namespace, campaign_id: int, env: dict[str, str], tmp: Path
) -> dict[str, Any]:
    """The same campaign through a real `passsync worker --concurrency 1` (one pool process,
    never recycled): its chunk tasks top the campaign up themselves; the pool process's RSS
    is sampled against the recipients finished (read from the database)."""
    from sqlalchemy import func, select

    from worker.campaigns.dispatch import top_up
    from worker.campaigns.models import CampaignRecipient, RecipientState
    from worker.config import load_settings
    from worker.tasks.app import configure
    from worker.tasks.campaigns import publish_chunks
    from worker.tasks.runtime import get_runtime

    configure(load_settings())
    runtime = get_runtime()

    def finished() -> int:
        with runtime.db.session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(CampaignRecipient)
                    .where(
                        CampaignRecipient.campaign_id == campaign_id,
                        CampaignRecipient.state.in_([RecipientState.DONE, RecipientState.SKIPPED]),
                    )
                )
                or 0
            )

    total = args.warmup + args.recipients
    log = (tmp / "worker.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--concurrency", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    samples: list[tuple[int, int]] = []
    try:
        with runtime.db.session() as session:
            chunks = top_up(session, campaign_id, runtime.settings.campaigns)
        publish_chunks(chunks)
        started, warm, next_sample = time.monotonic(), None, args.warmup
        while (done := finished()) < total:
            if proc.poll() is not None:
                raise SystemExit(f"the worker stopped; see {tmp / 'worker.log'}")
            children = psutil.Process(proc.pid).children()
            if children and done >= next_sample:
                pool_rss = sum(c.memory_info().rss for c in children)
                main_rss = psutil.Process(proc.pid).memory_info().rss
                samples.append((done, pool_rss))
                warm = warm or (done, pool_rss, time.monotonic(), main_rss)
                next_sample += args.sample_every
                print(
                    f"  {done:>8} recipients  pool RSS {pool_rss / 2**20:8.1f} MB  main "
                    f"{main_rss / 2**20:8.1f} MB",
                    flush=True,
                )
            time.sleep(1.0)
        end_rss = sum(c.memory_info().rss for c in psutil.Process(proc.pid).children())
        end_main = psutil.Process(proc.pid).memory_info().rss
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
    if warm is None:
        raise SystemExit("no sample after the warm-up")
    warm_done, warm_rss, warm_at, warm_main = warm
    measured = max(total - warm_done, 1)
    return {
        "main_process_growth_mb": round((end_main - warm_main) / 2**20, 2),
        "recipients": total,
        "measured_recipients": measured,
        "seconds": round(time.monotonic() - started, 1),
        "recipients_per_second": round(measured / (time.monotonic() - warm_at), 1),
        "warm_rss_mb": round(warm_rss / 2**20, 1),
        "end_rss_mb": round(end_rss / 2**20, 1),
        "growth_mb": round((end_rss - warm_rss) / 2**20, 2),
        "growth_bytes_per_recipient": round((end_rss - warm_rss) / measured, 1),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--limiter", choices=["on", "off"], default="on")
    parser.add_argument("--sample-every", type=int, default=5_000)
    parser.add_argument(
        "--tracemalloc", type=int, default=0, help="frames per trace (0: off; slows the run)"
    )
    parser.add_argument(
        "--process",
        action="store_true",
        help="a real worker process (one pool process) instead of this one; needs Redis",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        postgres = args.database == "postgres"
        db_url = fresh_database(DB_NAME) if postgres else f"sqlite:///{tmp / 'bench.db'}"
        if not postgres:
            from worker.migrate import upgrade

            upgrade(db_url)
        port = free_port()
        env = environment(args, db_url, port, tmp)
        try:
            with sandbox(env, port, tmp / "sandbox.log"):
                os.environ.update(env)
                from worker.tasks.runtime import get_runtime, reset_runtime

                reset_runtime()
                campaign_id = create_campaign(args.warmup + args.recipients)
                if args.process:
                    result = run_worker_process(args, campaign_id, env, tmp)
                else:
                    result = run_campaign(args, campaign_id)
                with contextlib.suppress(Exception):
                    get_runtime().db.dispose()
        finally:
            if postgres:
                drop_database(DB_NAME)
    print_report(args, result)
    return 0


def print_report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    bar = "within" if abs(r["growth_mb"]) <= 10 else "OVER"
    where = "a worker's pool process" if args.process else "in this process"
    print(
        f"benchmark: worker memory over campaign recipients ({where}, {args.database}, limiter "
        f"{args.limiter}, {r['recipients_per_second']} recipients/s)"
    )
    print(f"  recipients after warm-up   {r['measured_recipients']}")
    print(f"  RSS warm-up / end          {r['warm_rss_mb']} / {r['end_rss_mb']} MB")
    print(
        f"  growth                     {r['growth_mb']} MB ({r['growth_bytes_per_recipient']} "
        f"bytes per recipient; {bar} the 10 MB bar)"
    )
    if "main_process_growth_mb" in r:
        print(f"  worker main process growth {r['main_process_growth_mb']} MB")
    if "python_heap_bytes_per_recipient" in r:
        print(
            f"  Python heap growth         {r['python_heap_bytes_per_recipient']} bytes/recipient"
        )
        for top in r["top_python_growth"]:
            print(f"    {top['bytes_per_recipient']:>8} B/recipient  {top['where'][0].strip()}")
    if "end_rss_after_malloc_trim_mb" in r:
        print(f"  RSS after malloc_trim(0)   {r['end_rss_after_malloc_trim_mb']} MB")


if __name__ == "__main__":
    sys.exit(main())
