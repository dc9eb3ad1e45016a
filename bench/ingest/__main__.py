"""`python -m bench.ingest`: the receiver against a bare endpoint, on this machine's services.

Starts, side by side, the real receiver (`passsync api`, production settings, Postgres and
Redis on this machine, signature checks, ledger commit, enqueue) and a bare FastAPI endpoint
of the same shape (`bench/ingest/bare.py`: parse and validate, answer 202, store nothing),
each with the same uvicorn, and drives both from a separate load-generator process
(`bench/ingest/loadgen.py`) with signed events: single events and batched bodies of 100, and
in the same receiver process Shopify-signed `customers/update` webhooks to a `kind: shopify`
source (row `shopify`, its ratio taken to the standard receiver's single events).

For each it reports accepted events per second at saturation, p50/p99 latency at
saturation and at half of it, CPU seconds per 1,000 events (server processes, and the
database's for the receiver), and the ratio receiver / bare. At the end it checks that
every event answered 202 is in the ledger, and (unless --soak-seconds 0) runs the receiver
at half its saturation rate for a while and samples its memory.

Environment: PASSSYNC_BENCH_PG (an admin URL, default postgresql://postgres@127.0.0.1:5432/test;
the benchmark creates and drops its own database) and PASSSYNC_BENCH_REDIS (default
redis://127.0.0.1:6379/13, flushed).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import redis

from bench.common import drop_database, free_port, fresh_database

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"bench-ingest-secret-0123456789ab").decode()
DB_NAME = "passsync_bench_ingest"
SHAPES = {"single": (1, 64), "batch100": (100, 16)}  # body shape: (events per body, connections)
# A Shopify-signed customers/update, single events, against a `kind: shopify` source of the
# same receiver process (compared with the standard single-event row of the same run).
SHOPIFY_SECRET = "shpss_bench-ingest-client-secret"  # noqa: S105 - a benchmark's own
SHOPIFY_SHAPE = "shopify"


@dataclass
class Measurement:
    target: str
    workers: int
    shape: str
    events_per_second: float
    p50_ms_saturation: float
    p99_ms_saturation: float
    p50_ms_half: float
    p99_ms_half: float
    cpu_s_per_1000: float
    db_cpu_s_per_1000: float | None
    non_202: int


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[psutil.Process]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server {cmd} did not start; see {log}")
            time.sleep(0.2)
        time.sleep(1.0)  # let every uvicorn worker finish starting
        yield psutil.Process(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def postgres_cpu() -> float:
    total = 0.0
    for p in psutil.process_iter(["name", "cpu_times"]):
        if p.info["name"] and p.info["name"].startswith("postgres") and p.info["cpu_times"]:
            total += p.info["cpu_times"].user + p.info["cpu_times"].system
    return total


def loadgen(
    port: int,
    *,
    batch: int,
    connections: int,
    duration: float,
    tag: str,
    rate: float | None = None,
    ids_file: Path | None = None,
    sender: str = "standard",
) -> dict[str, Any]:
    shopify = sender == "shopify"
    cmd = [
        sys.executable,
        "-m",
        "bench.ingest.loadgen",
        "--port",
        str(port),
        "--secret",
        SHOPIFY_SECRET if shopify else SECRET,
        "--path",
        "/webhooks/shop" if shopify else "/webhooks/crm",
        "--sender",
        sender,
        "--batch",
        str(batch),
        "--connections",
        str(connections),
        "--duration",
        str(duration),
        "--tag",
        tag,
    ]
    if rate is not None:
        cmd += ["--mode", "rate", "--rate", f"{rate:.1f}"]
    if ids_file is not None:
        cmd += ["--ids-file", str(ids_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return dict(json.loads(out.stdout))


def measure(
    target: str,
    workers: int,
    shape: str,
    proc: psutil.Process,
    *,
    port: int,
    duration: float,
    ids_dir: Path | None,
    run_id: str,
) -> Measurement:
    sender = "shopify" if shape == SHOPIFY_SHAPE else "standard"
    batch, connections = SHAPES.get(shape, (1, 64))
    tag = f"{run_id}-{target}-{workers}-{shape}"
    cpu0, db0 = tree_cpu(proc), postgres_cpu()
    sat = loadgen(
        port,
        batch=batch,
        connections=connections,
        duration=duration,
        tag=tag + "s",
        ids_file=ids_dir / f"{tag}s.ids" if ids_dir else None,
        sender=sender,
    )
    cpu1, db1 = tree_cpu(proc), postgres_cpu()
    events = max(1, sat["events_accepted"])
    half_rate = sat["requests_per_second"] / 2
    half = loadgen(
        port,
        batch=batch,
        connections=connections,
        duration=duration,
        tag=tag + "h",
        rate=half_rate,
        ids_file=ids_dir / f"{tag}h.ids" if ids_dir else None,
        sender=sender,
    )
    ok = ("200", "202")
    non_202 = sum(n for code, n in {**sat["statuses"]}.items() if code not in ok)
    non_202 += sum(n for code, n in half["statuses"].items() if code not in ok)
    return Measurement(
        target=target,
        workers=workers,
        shape=shape,
        events_per_second=sat["events_per_second"],
        p50_ms_saturation=sat["p50_ms"],
        p99_ms_saturation=sat["p99_ms"],
        p50_ms_half=half["p50_ms"],
        p99_ms_half=half["p99_ms"],
        cpu_s_per_1000=(cpu1 - cpu0) / events * 1000,
        db_cpu_s_per_1000=(db1 - db0) / events * 1000 if target == "receiver" else None,
        non_202=non_202,
    )


def receiver_env(db_url: str, broker: str, port: int, workers: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PASSSYNC_DATABASE_URL": db_url,
            "PASSSYNC_BROKER_URL": broker,
            "PASSSYNC_SOURCES__CRM__SECRET": SECRET,
            "PASSSYNC_SOURCES__SHOP__KIND": "shopify",
            "PASSSYNC_SOURCES__SHOP__SECRET": SHOPIFY_SECRET,
            "PASSSYNC_API__PORT": str(port),
            "PASSSYNC_API__WORKERS": str(workers),
            "PASSSYNC_LOG_LEVEL": "WARNING",
            "PASSSYNC_CONFIG": str(ROOT / "config.yaml"),
        }
    )
    return env


def check_ledger(db_url: str, ids_dir: Path) -> tuple[int, int]:
    """(events answered 202, of those missing from the ledger)."""
    answered: set[str] = set()
    for path in ids_dir.glob("*receiver*.ids"):
        text = path.read_text()
        answered.update(line for line in text.splitlines() if line)
    plain = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn:
        stored = {row[0] for row in conn.execute("SELECT event_id FROM inbound_events")}
    return len(answered), len(answered - stored)


def soak(db_url: str, broker: str, seconds: float, workdir: Path) -> dict[str, Any]:
    """The receiver (one process) at half its single-event saturation rate; RSS samples."""
    port = free_port()
    env = receiver_env(db_url, broker, port, 1)
    cmd = [sys.executable, "-m", "worker.cli", "api"]
    with server(cmd, env, port, workdir / "soak.log") as proc:
        sat = loadgen(port, batch=1, connections=64, duration=5, tag="soak-sat")
        rate = sat["requests_per_second"] / 2
        gen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ingest.loadgen",
                "--port",
                str(port),
                "--secret",
                SECRET,
                "--mode",
                "rate",
                "--rate",
                f"{rate:.1f}",
                "--connections",
                "64",
                "--duration",
                str(seconds),
                "--tag",
                "soak",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        while gen.poll() is None:
            samples.append((time.monotonic() - started, tree_rss(proc)))
            time.sleep(5)
        result = json.loads(gen.stdout.read() if gen.stdout else "{}")
    warm = [rss for t, rss in samples if t >= min(30.0, seconds / 5)] or [s[1] for s in samples]
    return {
        "seconds": seconds,
        "rate_rps": rate,
        "requests": result.get("requests"),
        "p99_ms": result.get("p99_ms"),
        "rss_mb_after_warmup": warm[0] / 2**20,
        "rss_mb_end": warm[-1] / 2**20,
        "rss_mb_max": max(warm) / 2**20,
        "samples": len(samples),
    }


def table(rows: list[Measurement]) -> str:
    lines = [
        "| workers | body | endpoint | events/s | p50 / p99 ms at saturation | "
        "p50 / p99 ms at half | CPU s / 1k events | receiver / bare (shopify: / standard) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    bare = {(m.workers, m.shape): m.events_per_second for m in rows if m.target == "bare"}
    standard = {
        m.workers: m.events_per_second
        for m in rows
        if m.shape == "single" and m.target == "receiver"
    }
    for m in rows:
        # The Shopify row's ratio is to the standard receiver's single events, same run.
        base = (
            standard.get(m.workers) if m.shape == SHOPIFY_SHAPE else bare.get((m.workers, m.shape))
        )
        base = base if m.target == "receiver" or m.shape == SHOPIFY_SHAPE else None
        ratio = f"{m.events_per_second / base:.2f}" if base else ""
        cpu = f"{m.cpu_s_per_1000:.3f}"
        if m.db_cpu_s_per_1000 is not None:
            cpu += f" (+ db {m.db_cpu_s_per_1000:.3f})"
        lines.append(
            f"| {m.workers} | {m.shape} | {m.target} | {m.events_per_second:,.0f} | "
            f"{m.p50_ms_saturation:.1f} / {m.p99_ms_saturation:.1f} | "
            f"{m.p50_ms_half:.1f} / {m.p99_ms_half:.1f} | {cpu} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="receiver vs bare endpoint")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", default="1,2", help="uvicorn process counts to measure")
    parser.add_argument("--soak-seconds", type=float, default=300.0)
    parser.add_argument("--json", dest="json_out", default=None, help="write results here")
    args = parser.parse_args(argv)
    broker = os.environ.get("PASSSYNC_BENCH_REDIS", "redis://127.0.0.1:6379/13")
    redis.Redis.from_url(broker).flushdb()
    db_url = fresh_database(DB_NAME)
    run_id = f"r{int(time.time())}"
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        ids_dir = workdir / "ids"
        ids_dir.mkdir()
        for workers in (int(w) for w in args.workers.split(",")):
            bare_port, recv_port = free_port(), free_port()
            bare_cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.ingest.bare:app",
                "--port",
                str(bare_port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
            recv_cmd = [sys.executable, "-m", "worker.cli", "api"]
            recv_env = receiver_env(db_url, broker, recv_port, workers)
            for shape in SHAPES:
                with server(bare_cmd, dict(os.environ), bare_port, workdir / "bare.log") as proc:
                    rows.append(
                        measure(
                            "bare",
                            workers,
                            shape,
                            proc,
                            port=bare_port,
                            duration=args.duration,
                            ids_dir=None,
                            run_id=run_id,
                        )
                    )
                with server(recv_cmd, recv_env, recv_port, workdir / "recv.log") as proc:
                    rows.append(
                        measure(
                            "receiver",
                            workers,
                            shape,
                            proc,
                            port=recv_port,
                            duration=args.duration,
                            ids_dir=ids_dir,
                            run_id=run_id,
                        )
                    )
                    if shape == "single":  # the same process: a Shopify source's events
                        rows.append(
                            measure(
                                "receiver",
                                workers,
                                SHOPIFY_SHAPE,
                                proc,
                                port=recv_port,
                                duration=args.duration,
                                ids_dir=ids_dir,
                                run_id=run_id,
                            )
                        )
                for line in table(rows[-3 if shape == "single" else -2 :]).splitlines()[3:]:
                    print(line, flush=True)
        answered, missing = check_ledger(db_url, ids_dir)
        soak_result = (
            soak(db_url, broker, args.soak_seconds, workdir) if args.soak_seconds else None
        )
    drop_database(DB_NAME)
    redis.Redis.from_url(broker).flushdb()
    print()
    print(f"ingest benchmark ({os.cpu_count()} cores; load generator in its own process)")
    print(table(rows))
    print(f"\nledger check: {answered:,} events answered 202, {missing} missing from the ledger")
    if soak_result:
        print(
            f"soak: {soak_result['seconds']:.0f} s at {soak_result['rate_rps']:.0f} req/s, "
            f"receiver RSS {soak_result['rss_mb_after_warmup']:.1f} MB after warm-up -> "
            f"{soak_result['rss_mb_end']:.1f} MB at the end (max {soak_result['rss_mb_max']:.1f}),"
            f" p99 {soak_result['p99_ms']:.1f} ms"
        )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "rows": [asdict(m) for m in rows],
                    "answered": answered,
                    "missing": missing,
                    "soak": soak_result,
                },
                indent=2,
            )
        )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
