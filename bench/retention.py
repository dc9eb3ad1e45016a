"""`python -m bench.retention`: intake latency while the retention purge deletes a million rows.

One run on this machine's Postgres (a database of its own) and Redis:

1. seed `--rows` (1,000,000) handled inbound-ledger events 40 days old with one
   `INSERT ... SELECT FROM generate_series` (payloads the size the receiver writes);
2. start the real receiver (`passsync api`, one process, production settings) and post
   signed single-event webhooks to it at a fixed `--rate` (open loop: each latency is
   measured from the request's scheduled time, so a stall is charged to every request it
   delays). The load generator shares the machine's cores, so it is kept cheap: every
   request is built and signed before the clock starts (the receiver's signature tolerance
   is raised to an hour for that; it costs the receiver nothing), and its own lateness (how
   long after its scheduled time each request was written) and CPU are reported;
3. after `--baseline-seconds` without a purge, start the purge in its own process (the
   default retention settings unless overridden, until nothing is left), keep the load on
   while it runs and for `--tail-seconds` after.

Reported: intake p50/p99/max without and during the purge (same run, same rate), their
ratio, non-202 answers, the rows purged, the purge's seconds, rows/s and the share of its
time spent in batches (its duty cycle), the load generator's lateness and CPU, the load
average, and whether every seeded row is gone and every accepted webhook is in the ledger
(the purge took nothing it should not). The issue's bar: p99 during the purge under 50 ms.

Environment: PASSSYNC_BENCH_PG (admin URL, default postgresql://postgres@127.0.0.1:5432/test;
the benchmark creates and drops its own database), PASSSYNC_BENCH_REDIS (default
redis://127.0.0.1:6379/13, flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.common import drop_database, free_port, fresh_database
from bench.ingest.__main__ import ROOT, SECRET, receiver_env, server
from bench.ingest.loadgen import Requests, _read_response, percentile

DB_NAME = "passsync_bench_retention"

PURGE = """
import json, sys, time
from worker.config import load_settings
from worker.db import Database
from worker.retention import purge
from worker.retention.purge import run_retention
if sys.argv[1:] == ["sync"]:
    purge.SYNCHRONOUS_COMMIT = "on"
settings = load_settings()
db = Database(settings.database_url, pool_size=1)
paused = []
def sleep(seconds):
    paused.append(seconds)
    time.sleep(seconds)
retention = settings.retention.model_copy(update={"max_seconds": 1e9})
started = time.perf_counter()
report = run_retention(db, retention, tables=["inbound"], sleep=sleep)
seconds = time.perf_counter() - started
print(json.dumps({"purged": report.purged, "seconds": seconds,
                  "batches": report.tables[0].batches, "paused": sum(paused),
                  "batch_size": retention.batch_size, "pause_seconds": retention.pause_seconds,
                  "duty_cycle": retention.duty_cycle,
                  "synchronous_commit": purge.SYNCHRONOUS_COMMIT}))
"""
# Requests are signed before the clock starts; the receiver accepts signatures this old.
TOLERANCE_SECONDS = 3600


def broker_url() -> str:
    url = os.environ.get("PASSSYNC_BENCH_REDIS", "redis://127.0.0.1:6379/13")
    redis.Redis.from_url(url).flushdb()
    return url


def pg_conninfo(db_url: str) -> str:
    return db_url.replace("postgresql+psycopg://", "postgresql://", 1)


def seed(db_url: str, rows: int) -> float:
    """`rows` handled events, 40 days old; seconds it took."""
    started = time.perf_counter()
    payload = (
        '{"id": "old-%s", "type": "customer.updated", "occurred_at": "2026-01-01T00:00:00Z",'
        ' "customer": {"id": "c%s", "email": "c%s@example.test", "first_name": "Ada",'
        ' "attributes": {"tier": "gold", "points": 120}}, "data": {}}'
    )
    with psycopg.connect(pg_conninfo(db_url), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO inbound_events (source, event_id, type, customer_id, occurred_at,
                payload, status, attempts, received_at, updated_at, handled_at, sweeps)
            SELECT 'crm', 'old-' || g, 'customer.updated', 'c' || (g %% 100000), t,
                   format(%s, g, g %% 100000, g %% 100000)::jsonb, 'handled', 1, t, t, t, 0
            FROM generate_series(1, %s) AS g,
                 LATERAL (SELECT now() - interval '40 days' + g * interval '1 ms' AS t) AS at
            """,
            (payload, rows),
        )
        conn.execute("VACUUM ANALYZE inbound_events")
    return time.perf_counter() - started


@dataclass
class Load:
    """Latencies by the time each request was scheduled (perf_counter seconds)."""

    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (at, s, status)
    lateness: list[float] = field(default_factory=list)  # the generator's: scheduled -> written

    def window(self, start: float, end: float) -> list[tuple[float, float, int]]:
        return [s for s in self.samples if start <= s[0] < end]


class Presigned:
    """Signed requests built before the load starts, so the generator's clock loop only
    writes bytes; should a run outlast them, the rest are signed as they go (counted)."""

    def __init__(self, port: int, count: int) -> None:
        self.requests = Requests(f"127.0.0.1:{port}", "/webhooks/crm", SECRET, 1, "live")
        self.ready = [self.requests.next()[0] for _ in range(count)]
        self.ready.reverse()
        self.signed_live = 0

    def next(self) -> bytes:
        if self.ready:
            return self.ready.pop()
        self.signed_live += 1
        return self.requests.next()[0]


async def drive(
    port: int, rate: float, connections: int, *, stop: asyncio.Event, load: Load, bodies: Presigned
) -> None:
    """Open-loop load until `stop` is set."""
    slots: asyncio.Queue[float | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (scheduled := await slots.get()) is not None:
                writer.write(bodies.next())
                load.lateness.append(time.perf_counter() - scheduled)
                status, _body = await _read_response(reader)
                load.samples.append((scheduled, time.perf_counter() - scheduled, status))
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    started, n = time.perf_counter(), 0
    while not stop.is_set():
        scheduled = started + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        slots.put_nowait(scheduled)
        n += 1
    for _ in workers:
        slots.put_nowait(None)
    await asyncio.gather(*workers)


async def scenario(
    args: argparse.Namespace, port: int, env: dict[str, str], db_url: str
) -> dict[str, Any]:
    expected = args.warmup_seconds + args.baseline_seconds + args.purge_budget_seconds
    bodies = Presigned(port, int(args.rate * (expected + args.tail_seconds)))
    load, stop = Load(), asyncio.Event()
    cpu_start = time.process_time()
    vacuum = VacuumWatch(db_url)
    vacuum.start()
    driver = asyncio.create_task(
        drive(port, args.rate, args.connections, stop=stop, load=load, bodies=bodies)
    )
    await asyncio.sleep(args.warmup_seconds)
    base_start = time.perf_counter()
    await asyncio.sleep(args.baseline_seconds)
    purge_start = time.perf_counter()
    load_before = os.getloadavg()
    server_before = server_counters(db_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PURGE,
        *(["sync"] if args.sync_commit else []),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    purge_end = time.perf_counter()
    load_after = os.getloadavg()
    server_after = server_counters(db_url)
    await asyncio.sleep(args.tail_seconds)
    stop.set()
    await driver
    vacuum.stop()
    wall = time.perf_counter() - base_start + args.warmup_seconds
    during = load.window(purge_start, purge_end)
    vacuuming = [x for x in during if vacuum.running_at(x[0])]
    purge = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "without_purge": summary(load.window(base_start, purge_start)),
        "during_purge": summary(during),
        "during_purge_autovacuum": summary(vacuuming),
        "during_purge_no_autovacuum": summary([x for x in during if not vacuum.running_at(x[0])]),
        "server": {
            "wal_mb": round((server_after[0] - server_before[0]) / 2**20, 1),
            "checkpoints": server_after[1] - server_before[1],
            "autovacuum_seconds": round(vacuum.seconds_between(purge_start, purge_end), 1),
        },
        "purge": purge,
        "non_202": sum(1 for sample in load.samples if sample[2] != 202),
        "accepted": sum(1 for sample in load.samples if sample[2] == 202),
        "generator": {
            "late_p99_ms": round(percentile(load.lateness, 0.99) * 1000, 2),
            "late_max_ms": round(max(load.lateness, default=float("nan")) * 1000, 2),
            "cpu_share": round((time.process_time() - cpu_start) / wall, 3),
            "signed_live": bodies.signed_live,
        },
        "loadavg_1m": [round(load_before[0], 2), round(load_after[0], 2)],
    }


def server_counters(db_url: str) -> tuple[int, int]:
    """(WAL position in bytes, checkpoints so far) of the server."""
    with psycopg.connect(pg_conninfo(db_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn,"
            " checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


class VacuumWatch(threading.Thread):
    """When (perf_counter) a vacuum of the benchmark's database was running, every 0.25 s."""

    def __init__(self, db_url: str) -> None:
        super().__init__(daemon=True)
        self.db_url = db_url
        self.samples: list[tuple[float, bool]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(pg_conninfo(self.db_url), autocommit=True) as conn:
            while not self.done.wait(0.25):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_progress_vacuum"
                    " WHERE datname = current_database()"
                ).fetchone()
                self.samples.append((time.perf_counter(), bool(row and row[0])))

    def stop(self) -> None:
        self.done.set()
        self.join()

    def running_at(self, at: float) -> bool:
        index = bisect.bisect_right(self.samples, (at, True)) - 1
        return index >= 0 and self.samples[index][1]

    def seconds_between(self, start: float, end: float) -> float:
        running = [s for s in self.samples if start <= s[0] < end and s[1]]
        return len(running) * 0.25


def summary(samples: list[tuple[float, float, int]]) -> dict[str, Any]:
    latencies = [s[1] for s in samples]
    return {
        "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 2),
    }


def check(db_url: str) -> dict[str, int]:
    with psycopg.connect(pg_conninfo(db_url)) as conn:
        old = conn.execute(
            "SELECT count(*) FROM inbound_events WHERE source = 'crm' AND event_id LIKE 'old-%'"
        ).fetchone()
        live = conn.execute(
            "SELECT count(*) FROM inbound_events WHERE event_id LIKE 'live-%'"
        ).fetchone()
    return {
        "seeded_left": int(old[0]) if old else -1,
        "live_in_ledger": int(live[0]) if live else -1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0, help="webhooks per second")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    parser.add_argument("--tail-seconds", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the setting's")
    parser.add_argument("--pause-seconds", type=float, default=None, help="default: the setting's")
    parser.add_argument("--duty-cycle", type=float, default=None, help="default: the setting's")
    parser.add_argument(
        "--sync-commit",
        action="store_true",
        help="the purge's commits wait for the WAL flush (by default they do not)",
    )
    parser.add_argument(
        "--purge-budget-seconds",
        type=float,
        default=600.0,
        help="requests are pre-signed for this long a purge (signed as they go after it)",
    )
    args = parser.parse_args(argv)

    db_url = fresh_database(DB_NAME)
    try:
        seconds = seed(db_url, args.rows)
        print(
            f"seeded {args.rows} handled ledger rows (40 days old) in {seconds:.1f} s", flush=True
        )
        port = free_port()
        env = receiver_env(db_url, broker_url(), port, 1)
        if args.batch_size is not None:
            env["PASSSYNC_RETENTION__BATCH_SIZE"] = str(args.batch_size)
        if args.pause_seconds is not None:
            env["PASSSYNC_RETENTION__PAUSE_SECONDS"] = str(args.pause_seconds)
        if args.duty_cycle is not None:
            env["PASSSYNC_RETENTION__DUTY_CYCLE"] = str(args.duty_cycle)
        env["PASSSYNC_API__SIGNATURE_TOLERANCE_SECONDS"] = str(TOLERANCE_SECONDS)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "worker.cli", "api"]
            with server(cmd, env, port, Path(tmp) / "api.log"):
                result = asyncio.run(scenario(args, port, env, db_url))
        result |= check(db_url)
    finally:
        drop_database(DB_NAME)
    report(args, result)
    return 0


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    base, during, purge, gen = r["without_purge"], r["during_purge"], r["purge"], r["generator"]
    ratio = during["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("nan")
    verdict = "under" if during["p99_ms"] < 50 else "OVER"
    print(
        f"benchmark: intake at {args.rate:.0f} webhooks/s while the retention purge runs "
        f"(batches of {purge['batch_size']}, duty cycle {purge['duty_cycle']}, pause at least "
        f"{purge['pause_seconds']} s)"
    )
    print(f"  {'':16}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, row in (("without purge", base), ("during purge", during)):
        print(
            f"  {name:16}{row['requests']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}"
            f"{row['max_ms']:>10}"
        )
    print(f"  p99 during / without purge  {ratio:.2f}  ({verdict} the 50 ms bar)")
    rows_per_s = purge["purged"] / purge["seconds"] if purge["seconds"] else 0.0
    busy = 1 - purge["paused"] / purge["seconds"] if purge["seconds"] else 0.0
    print(
        f"  purged {purge['purged']} rows in {purge['seconds']:.1f} s ({rows_per_s:,.0f} rows/s, "
        f"{purge['batches']} batches, in batches {busy:.0%} of the time)"
    )
    vac, novac, server = r["during_purge_autovacuum"], r["during_purge_no_autovacuum"], r["server"]
    print(
        f"  during purge, p99 while autovacuum ran {vac['p99_ms']} ms ({vac['requests']} "
        f"requests), otherwise {novac['p99_ms']} ms; autovacuum ran "
        f"{server['autovacuum_seconds']} s of the purge; WAL {server['wal_mb']} MB, "
        f"{server['checkpoints']} checkpoints; purge commits synchronous_commit="
        f"{purge['synchronous_commit']}"
    )
    print(
        f"  load generator: late by p99 {gen['late_p99_ms']} ms (max {gen['late_max_ms']} ms), "
        f"{gen['cpu_share']:.0%} of a core, {gen['signed_live']} requests signed live; "
        f"load average (1 min) {r['loadavg_1m'][0]} at the purge's start, "
        f"{r['loadavg_1m'][1]} at its end"
    )
    print(
        f"  non-202 answers {r['non_202']}; seeded rows left {r['seeded_left']}; "
        f"accepted webhooks in the ledger {r['live_in_ledger']} of {r['accepted']}"
    )
    print("  " + json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
