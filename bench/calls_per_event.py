"""`python -m bench.calls_per_event`: provider calls per event, passsync against the naive way.

One seeded workload (tests/faults/workload.py: new customers, updates, no-op updates, bursts
of updates within a second) is delivered as a CRM webhook would: in real time (`occurred_at`),
10% of events delivered twice (a sender's retry, 1-30 s later) and 5% late (1-20 s, so after
newer events of the same customer). Both contenders run against the same in-memory provider
(worker/providers/memory.py), which counts every call:

- passsync: the real engine (`process_event`) on a SQLite ledger. A delivery is stored (a
  duplicate is refused by the ledger's unique key, as the receiver does) and applied when its
  task would run: at once for a customer quiet for `sync.coalesce_window_ms`, else at the end
  of the window after the customer's last scheduled apply (the pacer's leading and trailing
  edge, worker/ratelimit/pacing.py); shown with the default window and with coalescing off.
- naive: for every delivery, look the pass up, then create or update it.

`--quiet N` then measures a quiet system end to end (bench/engine.py's stack: the receiver,
2 worker processes, the sandbox, Postgres and Redis): N events sent one at a time, each to a
customer quiet for longer than the window, from the webhook to the ledger's handled_at.

Both final states are checked against the model (fields of each customer's newest event).
passsync must match it exactly (the run fails otherwise); for the naive way the number of
passes left with older data is reported.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from tests.faults.workload import T0, Event, Workload, expected_passes, generate, upid
from worker.config import load_settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.migrate import upgrade
from worker.providers.errors import NotFoundError
from worker.providers.memory import MemoryProvider
from worker.ratelimit.pacing import schedule
from worker.sync.engine import SyncContext, process_event
from worker.sync.templates import TemplateResolver

TEMPLATE = "tpl-loyalty"


@dataclass(order=True, frozen=True)
class Delivery:
    at: float  # seconds after the workload's start
    seq: int
    event: Event = field(compare=False)


@dataclass
class Result:
    name: str
    deliveries: int
    calls: Counter[str]
    wrong: int  # passes not showing their customer's newest event (twins count too)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def deliveries(load: Workload, rng: random.Random) -> list[Delivery]:
    """Real-time arrivals with duplicate and late deliveries, in arrival order."""
    out: list[Delivery] = []
    for event in load.events:
        at = (event.occurred_at - T0).total_seconds()
        if rng.random() < 0.05:
            at += rng.uniform(1, 20)
        out.append(Delivery(at, len(out), event))
        if rng.random() < 0.10:
            out.append(Delivery(at + rng.uniform(1, 30), len(out), event))
    return sorted(out)


def wrong_passes(provider: MemoryProvider, load: Workload) -> int:
    expected = expected_passes(load.events)
    shown = Counter(p.user_provided_id for p in provider.live())
    wrong = sum(n - 1 for n in shown.values())
    for stored in provider.live():
        wrong += stored.fields != expected.get(stored.user_provided_id)
    return wrong + len(set(expected) - set(shown))


def run_naive(load: Workload, arrivals: list[Delivery]) -> Result:
    """Check existence, then create or update, for every delivery."""
    provider = MemoryProvider()
    for delivery in arrivals:
        event = delivery.event
        try:
            found = provider.get_pass(upid(event.customer))
        except NotFoundError:
            provider.create_pass(
                template_id=TEMPLATE, user_provided_id=upid(event.customer), fields=event.fields()
            )
        else:
            provider.update_pass(found.pass_id, event.fields())
    return Result("naive", len(arrivals), provider.calls, wrong_passes(provider, load))


def _store(db: Database, event: Event) -> int | None:
    """A ledger row for the event, or None when the ledger already has it (a duplicate)."""
    with db.session() as session:
        known = select(InboundEvent.id).where(
            InboundEvent.source == "crm", InboundEvent.event_id == event.id
        )
        if session.execute(known).first() is not None:
            return None
        canonical = CanonicalEvent.model_validate(event.canonical())
        row = InboundEvent(
            source="crm",
            event_id=canonical.id,
            type=canonical.type,
            customer_id=canonical.customer.id,
            occurred_at=canonical.occurred_at,
            payload=canonical.model_dump(mode="json"),
        )
        session.add(row)
        session.flush()
        return row.id


def run_passsync(load: Workload, arrivals: list[Delivery], window_ms: int, workdir: Path) -> Result:
    """The real engine, each stored delivery applied when the pacer lets it run."""
    url = f"sqlite:///{workdir / f'ledger-{window_ms}.db'}"
    upgrade(url)
    db = Database(url)
    provider = MemoryProvider()
    settings = load_settings(
        database_url=url, data_dir=workdir, sync={"coalesce_window_ms": window_ms}
    )
    ctx = SyncContext(settings, provider, TemplateResolver(provider))
    due: list[tuple[float, int]] = []

    def apply_until(moment: float) -> None:
        while due and due[0][0] <= moment:
            _, row_id = heapq.heappop(due)
            with db.session() as session:
                process_event(session, row_id, ctx)

    last: dict[str, float] = {}  # the pacer's state: each customer's last scheduled apply
    try:
        for delivery in arrivals:
            apply_until(delivery.at)
            row_id = _store(db, delivery.event)
            if row_id is None:
                continue
            at = delivery.at
            if window_ms > 0:  # leading and trailing edge (worker/ratelimit/pacing.py)
                customer = delivery.event.customer
                at = last[customer] = schedule(last.get(customer), at, window_ms / 1000)
            heapq.heappush(due, (at, row_id))
        apply_until(float("inf"))
    finally:
        db.dispose()
    name = f"passsync (coalesce_window_ms={window_ms})"
    return Result(name, len(arrivals), provider.calls, wrong_passes(provider, load))


def report(load: Workload, arrivals: list[Delivery], results: list[Result]) -> None:
    events = len(load.events)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(load.kinds.items()))
    print("benchmark: provider calls per event, passsync vs naive (check, then create/update)")
    print(f"  workload (seed {load.seed})  {len(load.customers)} customers, {events} events")
    print(f"    events by kind         {kinds}")
    print(f"    deliveries             {len(arrivals)} (duplicates and late ones included)")
    for result in results:
        per_kind = ", ".join(f"{k} {n}" for k, n in sorted(result.calls.items()))
        print(f"  {result.name}")
        print(f"    provider calls         {result.total} ({per_kind})")
        print(f"    calls per event        {result.total / events:.3f}")
        print(f"    passes wrong at end    {result.wrong}")
    naive = results[-1]
    for ours in results[:-1]:
        print(f"  ratio naive / {ours.name}  {naive.total / ours.total:.2f}")


def quiet_report(count: int) -> None:
    """A quiet system: the real receiver, workers and sandbox (bench.engine's stack, 0 ms
    latency), one event at a time; webhook sent -> event handled, p50 and p99."""
    from bench.engine import Run

    options = argparse.Namespace(customers=count, processes=2, timeout=120.0)
    with tempfile.TemporaryDirectory(prefix="bench-quiet-") as tmp:
        run = Run("receiver", 0, options, Path(tmp))
        with run.stack():
            latencies = sorted(run.quiet_latencies(count, gap=0.2))
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    print("  quiet system (one event at a time through receiver, worker and sandbox)")
    print(f"    events                 {count}")
    print(f"    webhook -> handled     p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument(
        "--quiet",
        type=int,
        default=40,
        help="events sent one at a time for the quiet latency (0: skip; needs Postgres, Redis)",
    )
    args = parser.parse_args(argv)
    load = generate(args.seed, customers=args.customers, events=args.events)
    arrivals = deliveries(load, random.Random(args.seed))
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        workdir = Path(tmp)
        # The built-in rules (the shipped loyalty_card rule), not whatever config.yaml says.
        (workdir / "config.yaml").write_text("{}\n")
        os.environ["PASSSYNC_CONFIG"] = str(workdir / "config.yaml")
        default_window = load_settings().sync.coalesce_window_ms
        windows = [default_window, 0] if default_window else [0]
        results = [run_passsync(load, arrivals, w, workdir) for w in windows]
    results.append(run_naive(load, arrivals))
    report(load, arrivals, results)
    if args.quiet:
        quiet_report(args.quiet)
    broken = [r.name for r in results[:-1] if r.wrong]
    if broken:
        print(f"FAILED: {', '.join(broken)} left passes that do not match the model")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
