"""What every platform's sandbox shares: seeded fault draws, a token bucket, stats, and serving
a FastAPI app with uvicorn (blocking for `passsync sandbox`, or in a background thread).

A kind's sandbox keeps its own routes, store and behaviour model; its control subclasses
`FaultControl` with that model, and its server module calls `running_app` / `serve_app`.
"""

from __future__ import annotations

import json
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, Literal, TypeVar

import httpx
import uvicorn
from pydantic import BaseModel, ValidationError

STARTUP_TIMEOUT_SECONDS = 10.0
C = TypeVar("C", bound=BaseModel)


class TokenBucket:
    """`per_minute` tokens refilled continuously, burst up to `per_minute`; 0 = unlimited."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self._per_second = per_minute / 60.0
        self._capacity = float(per_minute)
        self._tokens = float(per_minute)
        self._clock = clock
        self._last = clock()

    def take(self) -> float | None:
        """None when a token was taken, else the seconds until one is available."""
        if self._capacity == 0:
            return None
        now = self._clock()
        elapsed = max(now - self._last, 0.0)
        self._tokens = min(self._capacity, self._tokens + elapsed * self._per_second)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self._per_second


class FaultControl(Generic[C]):
    """Shared mutable state of one sandbox app; every method is thread-safe.

    The behaviour model `C` has `rate_limit_per_minute`, `error_500_probability`,
    `error_503_probability`, `seed`, a `<fault>_probability` for every other fault kind in
    `fault_kinds`, and optionally `error_503_burst` (after one drawn 503, that many more).
    """

    # Every fault the stats report (at least "500" and "503").
    fault_kinds: ClassVar[tuple[str, ...]] = ("500", "503")
    # Whether stats() reports refused credentials by reason (`auth_refused`).
    counts_refusals: ClassVar[bool] = False

    def __init__(self, initial: C, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._initial = initial
        self._clock = clock
        self._lock = threading.Lock()
        self._burst_left = 0
        self._apply(self._initial, reseed=True)
        self._reset_stats()

    @property
    def config(self) -> C:
        return self._config

    def reset(self) -> None:
        """Back to the start-up settings, with fresh stats, RNG and no burst under way."""
        with self._lock:
            self._apply(self._initial, reseed=True)
            self._reset_stats()

    def configure(self, changes: dict[str, Any]) -> C:
        """Validate and apply a partial config; raises pydantic.ValidationError."""
        with self._lock:
            merged = type(self._config).model_validate({**self._config.model_dump(), **changes})
            if self._rate(merged) != self._rate(self._config):
                self._bucket = TokenBucket(self._rate(merged), self._clock)
            self._apply(merged, reseed="seed" in changes)
            return merged

    def take_token(self) -> int | None:
        """None when allowed; else whole seconds to wait (rounded up), counting the 429."""
        with self._lock:
            wait = self._bucket.take()
            if wait is None:
                return None
            self._rate_limited += 1
            return max(1, math.ceil(wait))

    def draw_error(self) -> Literal["500", "503"] | None:
        """A pre-handler fault: the rest of a 503 burst, else one draw for 500, 503 or none."""
        with self._lock:
            if self._burst_left > 0:
                self._burst_left -= 1
                self._faults["503"] += 1
                return "503"
            p500 = float(getattr(self._config, "error_500_probability", 0.0))
            p503 = float(getattr(self._config, "error_503_probability", 0.0))
            if p500 + p503 <= 0:
                return None
            roll = self._rng.random()
            kind: Literal["500", "503"] | None = (
                "500" if roll < p500 else "503" if roll < p500 + p503 else None
            )
            if kind is not None:
                self._faults[kind] += 1
            if kind == "503":
                self._burst_left = int(getattr(self._config, "error_503_burst", 0))
            return kind

    def draw(self, kind: str) -> bool:
        """One seeded draw for this fault; no draw at all when its probability is zero."""
        with self._lock:
            probability = float(getattr(self._config, f"{kind}_probability"))
            if probability <= 0 or self._rng.random() >= probability:
                return False
            self._faults[kind] += 1
            return True

    def count_call(self, endpoint: str) -> None:
        with self._lock:
            self._calls[endpoint] += 1

    def count_refused(self, reason: str) -> None:
        with self._lock:
            self._refused[reason] += 1

    def count_write(self, *, created: bool) -> None:
        with self._lock:
            self._writes += 1
            self._creates += int(created)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            result: dict[str, Any] = {
                "calls": dict(sorted(self._calls.items())),
                "writes": self._writes,
                "creates": self._creates,
                "rate_limited": self._rate_limited,
            }
            if self.counts_refusals:
                result["auth_refused"] = dict(sorted(self._refused.items()))
            result["faults_injected"] = sum(self._faults.values())
            result["faults"] = {k: self._faults[k] for k in self.fault_kinds}
            return result

    @staticmethod
    def _rate(config: BaseModel) -> int:
        return int(getattr(config, "rate_limit_per_minute", 0))

    def _apply(self, config: C, *, reseed: bool) -> None:
        self._config = config
        if reseed:
            seed = int(getattr(config, "seed", 0))
            self._rng = random.Random(seed)  # noqa: S311 - fault injection, not crypto

    def _reset_stats(self) -> None:
        self._calls: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self._writes = 0
        self._creates = 0
        self._rate_limited = 0
        self._burst_left = 0
        self._bucket = TokenBucket(self._rate(self._config), self._clock)


def configure_from_json(control: FaultControl[Any], body: bytes) -> tuple[int, Any]:
    """`POST /_sandbox/config`: apply a JSON object of changes to a sandbox's control. Returns
    the status and the JSON answer: 200 and the new config, or 422 naming what is invalid
    (nothing applied) for a body that is not an object or holds invalid settings."""
    try:
        changes = json.loads(body or b"{}")
    except ValueError:
        return 422, {"detail": "body must be a JSON object"}
    if not isinstance(changes, dict):
        return 422, {"detail": "body must be a JSON object"}
    try:
        config = control.configure(changes)
    except ValidationError as exc:
        return 422, {"detail": [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()]}
    return 200, config.model_dump()


class ControlClient:
    """The HTTP side of a running sandbox's /_sandbox endpoints (config, stats, reset)."""

    base_url: str

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/_sandbox{path}"
        response = httpx.request(method, url, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change behaviour at runtime (the kind's sandbox behaviour model); returns it all."""
        result: dict[str, Any] = self._control("POST", "/config", changes)
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "/stats")
        return result

    def reset(self) -> None:
        """Empty the store, zero the stats, restore the start-up config."""
        self._control("POST", "/reset")


def make_server(app: Any, host: str, port: int, *, log_level: str = "info") -> uvicorn.Server:
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=log_level == "debug"
    )
    return uvicorn.Server(config)


def serve_app(app: Any, host: str, port: int) -> None:
    """Serve on host:port until interrupted."""
    make_server(app, host, port).run()


@contextmanager
def running_app(app: Any, host: str, port: int, *, name: str) -> Iterator[str]:
    """Serve `app` in a daemon thread and yield its base URL; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = make_server(app, host, port, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    try:
        _wait_started(server, thread, name)
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"http://{shown}:{bound}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_SECONDS)
        sock.close()


def _wait_started(server: uvicorn.Server, thread: threading.Thread, name: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the {name} stopped during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {name} did not start in time")
        time.sleep(0.01)
