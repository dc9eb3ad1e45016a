"""`python -m bench.rotation`: refused calls while a key is rotated, with and without the hold.

The Passcreator sandbox runs in this process. `--threads` threads call the account (one
template listing after another, as busy pool processes do) for `--seconds`. After 1 s the
sandbox accepts only a new key (the old one is revoked at the provider); `--window` seconds
later the rotation is announced (the secrets file has the new key, the generation goes up).

- plain: the client as it was before rotation support (every call in the window is sent and
  refused; after the window it still has the old key, since only a restart would change it);
- rotating: `RotatingProvider` (a refused credential holds the account, a rotation is used at
  the next call).

Reported per mode: calls the provider refused, calls accepted, and the ratio of refused calls
(plain / rotating). Also the cost of the wrapper on an unchanged credential: calls per second
through `RotatingProvider` / through the plain client, against the same sandbox.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr

from worker.config import Settings
from worker.providers import registry
from worker.providers.credentials import CredentialRefusedError
from worker.providers.errors import ProviderError
from worker.providers.passcreator.sandbox.server import make_server
from worker.providers.passcreator.settings import SandboxSettings
from worker.providers.port import AccountSettings, ClosableProvider
from worker.providers.rotation import CredentialReloader, RotatingProvider

OLD, NEW = "bench-old-key", "bench-new-key"


@contextmanager
def sandbox() -> Iterator[tuple[str, Callable[[str], None]]]:
    settings = SandboxSettings(host="127.0.0.1", port=0, api_key=SecretStr(OLD))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = make_server(settings, log_level="error")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)

    def accept_only(key: str) -> None:
        server.config.app.state.sandbox._key = key.encode()

    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", accept_only
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _settings(base_url: str, key: str) -> Settings:
    return Settings(
        providers={
            "acct": {"kind": "passcreator", "base_url": base_url, "api_key": key, "max_attempts": 1}
        },
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


def run_mode(mode: str, threads: int, seconds: float, window: float) -> dict[str, Any]:
    with sandbox() as (base_url, accept_only):
        statuses: Counter[int | None] = Counter()
        hook = lambda attempt: statuses.update([attempt.status])  # noqa: E731
        settings = _settings(base_url, OLD)
        key, generation = [OLD], [0]

        def build(conf: AccountSettings) -> ClosableProvider:
            return registry.Account("acct", registry.get_kind(conf.kind), conf).build_client(hook)

        if mode == "plain":
            provider: Any = build(settings.providers["acct"])
        else:
            reloader = CredentialReloader(
                settings, load=lambda: _settings(base_url, key[0]), read=lambda: generation[0]
            )
            provider = RotatingProvider(reloader, "acct", build)

        def script() -> None:
            time.sleep(1.0)
            accept_only(NEW)
            time.sleep(window)
            key[0] = NEW
            generation[0] += 1

        timeline = threading.Thread(target=script)
        timeline.start()
        outcomes = _drive(provider, threads, seconds)
        timeline.join()
        provider.close()
    return {
        "mode": mode,
        "refused_calls": statuses[401],
        "accepted_calls": statuses[200],
        "outcomes": dict(outcomes),
    }


def overhead(threads: int, seconds: float, rounds: int = 6) -> dict[str, float]:
    """Calls/s through RotatingProvider over the plain client, unchanged key: rounds that
    alternate which goes first; the median of the per-round ratios (the machine is shared)."""
    with sandbox() as (base_url, _accept_only):
        settings = _settings(base_url, OLD)
        account = registry.account(settings, "acct")
        plain = account.build_client()
        reloader = CredentialReloader(settings, read=lambda: 0)
        rotating = RotatingProvider(reloader, "acct", lambda conf: account.build_client())
        ratios, plain_rates, rotating_rates = [], [], []
        for index in range(rounds):
            order = [("plain", plain), ("rotating", rotating)]
            rates = {}
            for name, provider in order if index % 2 == 0 else reversed(order):
                rates[name] = _drive(provider, threads, seconds)["ok"] / seconds
            plain_rates.append(rates["plain"])
            rotating_rates.append(rates["rotating"])
            ratios.append(rates["rotating"] / rates["plain"])
        plain.close()
        rotating.close()
    return {
        "plain_calls_per_s": round(statistics.median(plain_rates), 1),
        "rotating_calls_per_s": round(statistics.median(rotating_rates), 1),
        "rotating_over_plain": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("passsync").setLevel(logging.ERROR)  # the hold's warnings, once a call
    plain = run_mode("plain", args.threads, args.seconds, args.window)
    rotating = run_mode("rotating", args.threads, args.seconds, args.window)
    report = {
        "threads": args.threads,
        "window_seconds": args.window,
        "plain": plain,
        "rotating": rotating,
        "refused_plain_over_rotating": round(
            plain["refused_calls"] / max(rotating["refused_calls"], 1), 1
        ),
        "overhead": overhead(args.threads, 2.0),
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
    print(
        f"unchanged key, calls/s rotating / plain: {over['rotating_over_plain']} (median of "
        f"rounds, {over['ratio_min']}-{over['ratio_max']}; "
        f"{over['rotating_calls_per_s']} vs {over['plain_calls_per_s']} calls/s)"
    )


if __name__ == "__main__":
    main()
