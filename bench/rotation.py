"""`python -m bench.rotation`: refused calls while a credential is wrong until a rotation,
with and without `RotatingProvider`; and the wrapper's cost on an unchanged credential.

The local sandbox of an account's platform (`--kind`, default: the first registered) runs in
this process. `--threads` threads call the account (one template listing after another, as
busy pool processes do) for `--seconds`. The account starts with a credential the sandbox
refuses (a revoked key); `--window` seconds in, the rotation is announced (the settings now
hold the right credential, the fleet generation goes up).

- plain: the client as it was before rotation support (every call is sent and refused; only
  a restart would bring the new credential);
- rotating: `RotatingProvider` (a refused credential holds the account in the process, a
  rotation is used at the next call).

Reported per mode: calls the sandbox refused (401/403) and calls it accepted; the ratio of
refused calls plain / rotating; and the microseconds `RotatingProvider` adds to a call on the
right credential (a client that answers at once, median of alternating rounds).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from worker.config import Settings
from worker.providers import registry
from worker.providers.credentials import CredentialRefusedError
from worker.providers.errors import ProviderError
from worker.providers.port import AccountSettings, ClosableProvider
from worker.providers.rotation import CredentialReloader, RotatingProvider

WRONG = "bench-revoked-credential-0123456789abcdef"


@contextmanager
def sandbox(kind: str) -> Iterator[dict[str, str]]:
    """The kind's sandbox, running; the account settings that point at it."""
    kit = registry.get_kind(kind).sandbox
    if kit is None:
        raise SystemExit(f"platform {kind} has no sandbox")
    with kit.running(kit.settings_model(port=0)) as handle:
        yield handle.account_overrides()


def _settings(kind: str, overrides: dict[str, str], *, right: bool) -> Settings:
    secrets = registry.get_kind(kind).secret_fields
    account: dict[str, Any] = {"kind": kind, **overrides}
    if not right:
        account.update({k: WRONG for k in secrets if k in overrides})
    if "max_attempts" in registry.settings_model(kind).model_fields:
        account["max_attempts"] = 1  # one HTTP call per provider call: counts are calls
    return Settings(
        providers={"acct": account},
        credentials={"reload_check_seconds": 1.0, "refused_hold_seconds": 5.0},
    )


def _drive(provider: Any, threads: int, seconds: float) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < deadline:
            try:
                provider.list_templates()
                found = "ok"
            except CredentialRefusedError:
                found = "held"
                time.sleep(0.01)  # a task would wait for its retry
            except ProviderError:
                found = "error"
            with lock:
                outcomes[found] += 1

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes


def run_mode(kind: str, mode: str, threads: int, seconds: float, window: float) -> dict[str, Any]:
    with sandbox(kind) as overrides:
        statuses: Counter[int | None] = Counter()
        lock = threading.Lock()

        def hook(attempt: Any) -> None:
            with lock:
                statuses[attempt.status] += 1

        settings = _settings(kind, overrides, right=False)
        right, generation = [False], [0]

        def build(conf: AccountSettings) -> ClosableProvider:
            return registry.Account("acct", registry.get_kind(kind), conf).build_client(hook)

        if mode == "plain":
            provider: Any = build(settings.providers["acct"])
        else:
            reloader = CredentialReloader(
                settings,
                load=lambda: _settings(kind, overrides, right=right[0]),
                read=lambda: generation[0],
            )
            provider = RotatingProvider(reloader, "acct", build)

        def rotate() -> None:
            time.sleep(window)
            right[0] = True
            generation[0] += 1

        timeline = threading.Thread(target=rotate)
        timeline.start()
        outcomes = _drive(provider, threads, seconds)
        timeline.join()
        provider.close()
    return {
        "mode": mode,
        "refused_calls": statuses[401] + statuses[403],
        "accepted_calls": sum(n for s, n in statuses.items() if s is not None and s < 300),
        "outcomes": dict(outcomes),
    }


class _Instant:
    """A client that answers at once: what is left to time is the wrapper."""

    name = "instant"

    def list_templates(self) -> list[Any]:
        return []

    def close(self) -> None:
        return None


def overhead(kind: str, calls: int = 200_000, rounds: int = 5) -> dict[str, float]:
    """Microseconds the wrapper adds to one call (one thread, a client that answers at once,
    the median of alternating rounds); a real provider call takes milliseconds."""
    with sandbox(kind) as overrides:
        settings = _settings(kind, overrides, right=True)
    reloader = CredentialReloader(settings, read=lambda: 0)
    plain: Any = _Instant()
    rotating = RotatingProvider(reloader, "acct", lambda conf: _Instant())  # type: ignore[arg-type,return-value]
    added = []
    for index in range(rounds):
        timed = {}
        pair = [("plain", plain), ("rotating", rotating)]
        for name, provider in pair if index % 2 == 0 else reversed(pair):
            began = time.perf_counter()
            for _ in range(calls):
                provider.list_templates()
            timed[name] = (time.perf_counter() - began) / calls * 1e6
        added.append(timed["rotating"] - timed["plain"])
    return {"added_us_per_call": round(statistics.median(added), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default=registry.default_kind())
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("passsync").setLevel(logging.ERROR)  # the hold's warnings, once a call
    plain = run_mode(args.kind, "plain", args.threads, args.seconds, args.window)
    rotating = run_mode(args.kind, "rotating", args.threads, args.seconds, args.window)
    report = {
        "kind": args.kind,
        "threads": args.threads,
        "window_seconds": args.window,
        "plain": plain,
        "rotating": rotating,
        "refused_plain_over_rotating": round(
            plain["refused_calls"] / max(rotating["refused_calls"], 1), 1
        ),
        "overhead": overhead(args.kind),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for row in (plain, rotating):
        print(
            f"{row['mode']:<9} refused calls {row['refused_calls']:>6}  "
            f"accepted {row['accepted_calls']:>6}"
        )
    print(f"refused calls, plain / rotating: {report['refused_plain_over_rotating']}")
    over = report["overhead"]
    print(f"cost of the wrapper on a right credential: {over['added_us_per_call']} us per call")


if __name__ == "__main__":
    main()
