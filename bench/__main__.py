"""`python -m bench`: run every benchmark in turn.

- the end-to-end demo workload on the embedded stack (events per second through the real
  receiver, worker and sandbox; provider calls per event);
- `bench.ingest`: the receiver against a bare endpoint (needs the machine's Postgres and Redis;
  `BENCH_INGEST_ARGS` passes options, e.g. "--soak-seconds 0").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> int:
    status = demo()
    status |= ingest()
    return status


def ingest() -> int:
    args = os.environ.get("BENCH_INGEST_ARGS", "").split()
    print("\nbenchmark: ingest, receiver vs bare endpoint (Postgres and Redis on this machine)")
    return subprocess.run([sys.executable, "-m", "bench.ingest", *args], check=False).returncode


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
