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

`--process` runs the campaign through a real `passsync worker --concurrency 1` with pool
recycling off and reports each of its processes against that bar: the pool process (the
campaign path) and the main process (Celery's consumer: it receives every message and arms
every task's time limit); the exit status is 1 when one is over. With `--tracemalloc N` every
worker process (`--trace main`: the main one only) is traced from its start, through a
`sitecustomize` on the worker's PYTHONPATH written by this script, and dumps a snapshot
after the warm-up and at the end: the top growth per process, `--frames` deep.

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
DB_NAME = f"passsync_bench_memory_{os.getpid()}"  # two runs never share one
KEY = "bench-memory-key"
BAR_MB = 10  # issue 17: over 100,000 recipients, RSS within 10 MB of its warm-up value
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


# Written to a temporary directory put first on the worker's PYTHONPATH (bench only): every
# process of the worker (the main one, and each pool process after its fork) dumps a
# tracemalloc snapshot `<pid>-<tag>.snap` when the bench writes `<tag>` into `request`.
SNAPSHOT_HOOK = """\
import os, threading, time, tracemalloc

_DIR = os.environ.get("BENCH_MEMORY_SNAPSHOTS")


def _loop():
    last = None
    while True:
        try:
            with open(os.path.join(_DIR, "request")) as f:
                tag = f.read().strip()
        except OSError:
            tag = ""
        if tag and tag != last and tracemalloc.is_tracing():
            last = tag
            path = os.path.join(_DIR, f"{os.getpid()}-{tag}.snap")
            tracemalloc.take_snapshot().dump(path + ".tmp")
            os.rename(path + ".tmp", path)
        time.sleep(0.5)


def _start():
    threading.Thread(target=_loop, daemon=True, name="bench-memory-snapshots").start()


def _child():
    if os.environ.get("BENCH_MEMORY_TRACE_POOL") == "0":
        tracemalloc.stop()  # the pool process runs at full speed, untraced
    else:
        _start()


if _DIR:
    _start()
    os.register_at_fork(after_in_child=_child)
"""


def snapshot_env(env: dict[str, str], tmp: Path, frames: int, pool: bool) -> Path:
    """The worker's environment for per-process tracemalloc snapshots; their directory."""
    hook, snaps = tmp / "hook", tmp / "snapshots"
    hook.mkdir()
    snaps.mkdir()
    (hook / "sitecustomize.py").write_text(SNAPSHOT_HOOK)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    env["PYTHONTRACEMALLOC"] = str(frames)
    env["BENCH_MEMORY_SNAPSHOTS"] = str(snaps)
    env["BENCH_MEMORY_TRACE_POOL"] = "1" if pool else "0"
    return snaps


def request_snapshots(snaps: Path, tag: str, pids: list[int]) -> None:
    """Ask every process in `pids` for a snapshot tagged `tag`; wait until all are written."""
    (snaps / "request").write_text(tag)
    deadline = time.monotonic() + 300
    while not all((snaps / f"{pid}-{tag}.snap").exists() for pid in pids):
        if time.monotonic() > deadline:
            raise SystemExit(f"no tracemalloc snapshot {tag} from every process in {pids}")
        time.sleep(0.5)


def heap_growth(snaps: Path, pid: int, measured: int) -> dict[str, Any]:
    """The Python heap's growth of one worker process between its warm and end snapshots."""
    warm = tracemalloc.Snapshot.load(str(snaps / f"{pid}-warm.snap"))
    end = tracemalloc.Snapshot.load(str(snaps / f"{pid}-end.snap"))
    stats = end.compare_to(warm, "traceback")
    return {
        "python_heap_bytes_per_recipient": round(sum(s.size_diff for s in stats) / measured, 1),
        "top_python_growth": [
            {
                "bytes_per_recipient": round(s.size_diff / measured, 1),
                "count_diff": s.count_diff,
                "where": s.traceback.format(most_recent_first=True),
            }
            for s in stats[:10]
        ],
    }


def finished_recipients(runtime: Any, campaign_id: int) -> int:
    from sqlalchemy import func, select

    from worker.campaigns.models import CampaignRecipient, RecipientState

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


@contextmanager
def worker_process(env: dict[str, str], tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`passsync worker --concurrency 1`, stopped (its whole process group) on the way out."""
    with (tmp / "worker.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker", "--concurrency", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


def process_report(samples: list[tuple[int, int]], measured: int) -> dict[str, Any]:
    """One process's RSS: warm-up, end, peak, growth, and the growth over the second half
    (bounded caches filling early show as growth that stops; a leak grows in both halves)."""
    (warm_done, warm_rss), (end_done, end_rss) = samples[0], samples[-1]
    half = warm_done + (end_done - warm_done) // 2
    mid_rss = next(r for d, r in samples if d >= half)
    return {
        "warm_rss_mb": round(warm_rss / 2**20, 1),
        "end_rss_mb": round(end_rss / 2**20, 1),
        "peak_rss_mb": round(max(r for _, r in samples) / 2**20, 1),
        "growth_mb": round((end_rss - warm_rss) / 2**20, 2),
        "growth_bytes_per_recipient": round((end_rss - warm_rss) / measured, 1),
        "second_half_growth_mb": round((end_rss - mid_rss) / 2**20, 2),
    }


def run_worker_process(
    args: argparse.Namespace, campaign_id: int, env: dict[str, str], tmp: Path
) -> dict[str, Any]:
    """The same campaign through a real `passsync worker --concurrency 1` (one pool process,
    recycling off): its chunk tasks top the campaign up themselves; the RSS of each of its
    processes (the main one, which consumes and hands tasks out, and the pool process) is
    sampled against the recipients finished (read from the database)."""
    from worker.campaigns.dispatch import top_up
    from worker.config import load_settings
    from worker.tasks.app import configure
    from worker.tasks.campaigns import publish_chunks
    from worker.tasks.runtime import get_runtime

    configure(load_settings())
    runtime = get_runtime()
    total = args.warmup + args.recipients
    env = {**env, "PASSSYNC_CELERY__MAX_MEMORY_PER_CHILD_MB": "0"}  # recycling off
    snaps = (
        snapshot_env(env, tmp, args.tracemalloc, args.trace == "all") if args.tracemalloc else None
    )
    pids: dict[str, int] = {}  # role -> pid, fixed at the warm-up
    samples: dict[str, list[tuple[int, int]]] = {"main": [], "pool": []}
    traced: list[int] = []  # the pids asked for tracemalloc snapshots
    with worker_process(env, tmp) as proc:
        main = psutil.Process(proc.pid)

        def roles() -> dict[str, psutil.Process]:
            children = main.children()
            return {"main": main, "pool": children[0]} if len(children) == 1 else {}

        with runtime.db.session() as session:
            chunks = top_up(session, campaign_id, runtime.settings.campaigns)
        publish_chunks(chunks)
        started, warm_at, warm_done, next_sample = time.monotonic(), 0.0, 0, args.warmup
        while (done := finished_recipients(runtime, campaign_id)) < total:
            if proc.poll() is not None:
                raise SystemExit(f"the worker stopped; see {tmp / 'worker.log'}")
            now = roles()
            if pids and {r: p.pid for r, p in now.items()} != pids:
                raise SystemExit(f"a worker process was replaced: {pids} -> {now}")
            if now and done >= next_sample:
                if not pids:
                    if snaps is not None:
                        traced = [
                            p.pid for r, p in now.items() if args.trace == "all" or r == "main"
                        ]
                        request_snapshots(snaps, "warm", traced)
                        done = finished_recipients(runtime, campaign_id)
                    pids = {r: p.pid for r, p in now.items()}
                    warm_at, warm_done = time.monotonic(), done
                for role, process in now.items():
                    samples[role].append((done, int(process.memory_info().rss)))
                next_sample += args.sample_every
                print(
                    f"  {done:>8} recipients  "
                    + "  ".join(f"{r} RSS {s[-1][1] / 2**20:7.1f} MB" for r, s in samples.items()),
                    flush=True,
                )
            time.sleep(1.0)
        ended_at = time.monotonic()
        for role, process in roles().items():
            samples[role].append((total, int(process.memory_info().rss)))
        if snaps is not None:
            request_snapshots(snaps, "end", traced)
    if not pids:
        raise SystemExit("no sample after the warm-up")
    measured = max(total - warm_done, 1)
    processes = {
        role: {
            "pid": pid,
            **process_report(samples[role], measured),
            **(heap_growth(snaps, pid, measured) if snaps and pid in traced else {}),
        }
        for role, pid in pids.items()
    }
    return {
        "recipients": total,
        "measured_recipients": measured,
        "seconds": round(ended_at - started, 1),
        "recipients_per_second": round(measured / (ended_at - warm_at), 1),
        "processes": processes,
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
        "--tracemalloc",
        type=int,
        default=0,
        help="frames per trace (0: off; slows the run); with --process, in every worker process",
    )
    parser.add_argument(
        "--frames", type=int, default=1, help="frames printed per top allocation site"
    )
    parser.add_argument(
        "--trace",
        choices=["all", "main"],
        default="all",
        help="with --process --tracemalloc: trace every worker process, or the main one only",
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
    return 0 if within_bar(result) else 1


def print_report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    where = "a real worker, each process" if args.process else "in this process"
    print(
        f"benchmark: worker memory over campaign recipients ({where}, {args.database}, limiter "
        f"{args.limiter}, {r['recipients_per_second']} recipients/s)"
    )
    print(f"  recipients after warm-up   {r['measured_recipients']}")
    for role, p in r.get("processes", {"this process": r}).items():
        bar = "within" if abs(p["growth_mb"]) <= BAR_MB else "OVER"
        print(f"  {role}:")
        print(f"    RSS warm-up / end          {p['warm_rss_mb']} / {p['end_rss_mb']} MB")
        print(
            f"    growth                     {p['growth_mb']} MB "
            f"({p['growth_bytes_per_recipient']} bytes per recipient; {bar} the {BAR_MB} MB bar)"
        )
        if "second_half_growth_mb" in p:
            print(f"    growth, second half        {p['second_half_growth_mb']} MB")
        if "python_heap_bytes_per_recipient" in p:
            print(
                "    Python heap growth         "
                f"{p['python_heap_bytes_per_recipient']} bytes/recipient"
            )
            for top in p["top_python_growth"]:
                frames = [w.strip() for w in top["where"] if w.strip().startswith("File")]
                print(
                    f"      {top['bytes_per_recipient']:>8} B/recipient "
                    f"({top.get('count_diff', '?')} blocks)  {frames[0] if frames else '?'}"
                )
                for frame in frames[1 : args.frames]:
                    print(f"{'':>36}{frame}")
        if "end_rss_after_malloc_trim_mb" in p:
            print(f"    RSS after malloc_trim(0)   {p['end_rss_after_malloc_trim_mb']} MB")


def within_bar(r: dict[str, Any]) -> bool:
    return all(abs(p["growth_mb"]) <= BAR_MB for p in r.get("processes", {"": r}).values())


if __name__ == "__main__":
    sys.exit(main())
