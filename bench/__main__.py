"""`python -m bench`: run every benchmark in turn.

- the end-to-end demo workload on the embedded stack (events per second through the real
  receiver, worker and sandbox; provider calls per event);
- `bench.ingest`: the receiver against a bare endpoint (needs the machine's Postgres and Redis;
  `BENCH_INGEST_ARGS` passes options, e.g. "--soak-seconds 0");
- `bench.ingest.metrics`: the receiver with metrics on vs off, alternating rounds
  (`BENCH_METRICS_ARGS`, e.g. "--rounds 3");
- `bench.limiter`: a campaign against the rate-limited sandbox, passsync's shared limiter vs
  Celery's per-task rate_limit (`BENCH_LIMITER_ARGS`, e.g. "--passes 2000 --limit 1200");
- `bench.limiter --import-rows`: `passsync campaign create` on CSV files of 100,000 and
  1,000,000 rows (rows/s, peak RSS ratio), COPY vs batched INSERT (`BENCH_IMPORT_ARGS`,
  default "--import-rows 1000000");
- `bench.calls_per_event`: provider calls per event, the real engine vs the naive check-then-
  create-or-update, on one seeded workload, and a quiet system's latency
  (`BENCH_CALLS_ARGS`, e.g. "--events 1000 --quiet 20");
- `bench.engine`: passsync's engine (from the ledger, and end to end through the receiver)
  against a hand-written Celery worker, 0 and 20 ms provider latency (`BENCH_ENGINE_ARGS`,
  e.g. "--customers 2000");
- `bench.crash_recovery`: a worker SIGKILLed during a provider call, seconds until every event
  is handled (`BENCH_CRASH_ARGS`, e.g. "--runs 5");
- `bench.rotation`: calls the provider refused while a key was revoked and then rotated, the
  plain client vs `RotatingProvider`, and the wrapper's cost on an unchanged key
  (`BENCH_ROTATION_ARGS`, e.g. "--threads 8 --window 5");
- `bench.memory`: a worker's RSS over campaign recipients after its warm-up
  (`BENCH_MEMORY_ARGS`, e.g. "--recipients 10000 --limiter off");
- `bench.retention`: intake p50/p99 while the retention purge deletes 1,000,000 ledger rows,
  against the same load without a purge (`BENCH_RETENTION_ARGS`, e.g. "--rows 200000").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> int:
    status = demo()
    status |= ingest()
    status |= ingest_metrics()
    status |= limiter()
    status |= campaign_import()
    status |= calls_per_event()
    status |= engine()
    status |= crash_recovery()
    status |= rotation()
    status |= memory()
    status |= retention()
    return status


def memory() -> int:
    args = os.environ.get("BENCH_MEMORY_ARGS", "").split()
    print("\nbenchmark: worker memory over campaign recipients")
    return subprocess.run([sys.executable, "-m", "bench.memory", *args], check=False).returncode


def retention() -> int:
    args = os.environ.get("BENCH_RETENTION_ARGS", "").split()
    print("\nbenchmark: intake latency during a retention purge")
    return subprocess.run([sys.executable, "-m", "bench.retention", *args], check=False).returncode


def ingest_metrics() -> int:
    args = os.environ.get("BENCH_METRICS_ARGS", "").split()
    print("\nbenchmark: receiver events/s with metrics on vs off (Postgres and Redis here)")
    return subprocess.run(
        [sys.executable, "-m", "bench.ingest.metrics", *args], check=False
    ).returncode


def rotation() -> int:
    args = os.environ.get("BENCH_ROTATION_ARGS", "").split()
    print("\nbenchmark: refused calls while a key is rotated, with and without the hold")
    return subprocess.run([sys.executable, "-m", "bench.rotation", *args], check=False).returncode


def crash_recovery() -> int:
    args = os.environ.get("BENCH_CRASH_ARGS", "").split()
    print("\nbenchmark: SIGKILL during a provider call, time to recover")
    return subprocess.run(
        [sys.executable, "-m", "bench.crash_recovery", *args], check=False
    ).returncode


def engine() -> int:
    args = os.environ.get("BENCH_ENGINE_ARGS", "").split()
    print("\nbenchmark: engine, passsync vs a hand-written Celery worker")
    return subprocess.run([sys.executable, "-m", "bench.engine", *args], check=False).returncode


def calls_per_event() -> int:
    args = os.environ.get("BENCH_CALLS_ARGS", "").split()
    print()
    return subprocess.run(
        [sys.executable, "-m", "bench.calls_per_event", *args], check=False
    ).returncode


def ingest() -> int:
    args = os.environ.get("BENCH_INGEST_ARGS", "").split()
    print("\nbenchmark: ingest, receiver vs bare endpoint (Postgres and Redis on this machine)")
    return subprocess.run([sys.executable, "-m", "bench.ingest", *args], check=False).returncode


def limiter() -> int:
    args = os.environ.get("BENCH_LIMITER_ARGS", "").split()
    print("\nbenchmark: campaign under a rate limit, shared limiter vs Celery rate_limit")
    return subprocess.run([sys.executable, "-m", "bench.limiter", *args], check=False).returncode


def campaign_import() -> int:
    args = os.environ.get("BENCH_IMPORT_ARGS", "--import-rows 1000000").split()
    print("\nbenchmark: campaign import from CSV (Postgres here), COPY vs batched INSERT")
    return subprocess.run([sys.executable, "-m", "bench.limiter", *args], check=False).returncode


def demo() -> int:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        return result.returncode
    report = json.loads(result.stdout[result.stdout.index("{") :])
    calls_per_event = report["provider_calls"] / report["events_generated"]
    print("benchmark: end-to-end demo workload (embedded stack, SQLite, 2 worker processes)")
    print(f"  events                 {report['events_generated']}")
    print(f"  deliveries (with dups) {report['deliveries_sent']}")
    print(f"  elapsed seconds        {report['elapsed_seconds']}")
    print(f"  events per second      {report['events_per_second']}")
    print(f"  provider calls/event   {calls_per_event:.3f}")
    print(f"  lost / twin passes     {report['events_lost']} / {report['passes_duplicated']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
