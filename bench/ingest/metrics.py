"""`python -m bench.ingest.metrics`: receiver events/s with metrics on vs off (target >= 0.95x).

The real receiver (`passsync api`, one process, Postgres and Redis on this machine) is
started alternately with `metrics.enabled: true` and `false` and saturated by the same load
generator (single signed events, 64 connections), round after round, so drift of a shared
machine hits both sides alike; the ratio is the median of on / off over the rounds. After
each "on" round the scrape is checked to have counted every answered request, so the figure
is for metrics that really counted.

    python -m bench.ingest.metrics [--rounds 5] [--duration 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.common import drop_database, free_port, fresh_database
from bench.ingest.__main__ import loadgen, receiver_env, server

DB_NAME = "passsync_bench_metrics"


def counted_requests(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name == "passsync_webhook_requests":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


def one_round(db_url: str, broker: str, workdir: Path, *, on: bool, duration: float) -> float:
    port = free_port()
    env = receiver_env(db_url, broker, port, 1)
    env["PASSSYNC_METRICS__ENABLED"] = "true" if on else "false"
    cmd = [sys.executable, "-m", "worker.cli", "api"]
    tag = f"m{'on' if on else 'off'}{time.time_ns()}"
    with server(cmd, env, port, workdir / f"{tag}.log"):
        result = loadgen(port, batch=1, connections=64, duration=duration, tag=tag)
        if on:
            answered = sum(result["statuses"].values())
            counted = counted_requests(port)
            if counted < answered:
                raise SystemExit(f"metrics counted {counted:.0f} of {answered} requests")
        else:
            status = httpx.get(f"http://127.0.0.1:{port}/metrics").status_code
            if status != 404:
                raise SystemExit(f"metrics off, yet /metrics answered {status}")
    return float(result["events_per_second"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="receiver events/s, metrics on vs off")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)
    broker = os.environ.get("PASSSYNC_BENCH_REDIS", "redis://127.0.0.1:6379/13")
    redis.Redis.from_url(broker).flushdb()
    db_url = fresh_database(DB_NAME)
    on: list[float] = []
    off: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
            for n in range(args.rounds):
                # Alternate which side goes first, so neither always meets a warmer database.
                order = (True, False) if n % 2 == 0 else (False, True)
                for side in order:
                    rate = one_round(db_url, broker, Path(tmp), on=side, duration=args.duration)
                    (on if side else off).append(rate)
                    print(f"round {n + 1} metrics {'on ' if side else 'off'}: {rate:,.0f} events/s")
    finally:
        drop_database(DB_NAME)
        redis.Redis.from_url(broker).flushdb()
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    ratio = statistics.median(ratios)
    print()
    print("| receiver, 1 process, single events | events/s (median) | on / off |")
    print("|---|---|---|")
    print(f"| metrics off | {statistics.median(off):,.0f} | |")
    print(f"| metrics on | {statistics.median(on):,.0f} | {ratio:.2f} |")
    print(f"\nper-round ratios: {', '.join(f'{r:.2f}' for r in ratios)}  (target >= 0.95)")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"on": on, "off": off, "ratios": ratios, "ratio": ratio}, indent=2)
        )
    return 0 if ratio >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
