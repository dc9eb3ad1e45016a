"""`python -m bench`: run every benchmark in turn.

So far one: the end-to-end demo workload on the embedded stack (events per second through
the real receiver, worker and sandbox; provider calls per event). The receiver-versus-bare-
endpoint, limiter and calls-per-event-versus-naive benchmarks come with their issues.
"""

from __future__ import annotations

import json
import subprocess
import sys


def main() -> int:
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
