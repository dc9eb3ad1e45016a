"""The sandbox's runtime knobs: behaviour config, token bucket, seeded faults and stats."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from pydantic import ConfigDict

from worker.providers.passcreator.settings import SandboxBehaviour, SandboxSettings

FaultKind = Literal["500", "503", "commit_then_fail", "non_json", "slow"]
FAULT_KINDS: tuple[FaultKind, ...] = ("500", "503", "commit_then_fail", "non_json", "slow")


class SandboxConfig(SandboxBehaviour):
    """Everything POST /_sandbox/config may change; starts from SandboxSettings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> SandboxConfig:
        return cls.model_validate(settings.model_dump(include=set(cls.model_fields)))


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


class SandboxControl:
    """Shared mutable state of one sandbox app; every method is thread-safe."""

    def __init__(self, settings: SandboxSettings, *, clock: Callable[[], float] = time.monotonic):
        self._initial = SandboxConfig.from_settings(settings)
        self._clock = clock
        self._lock = threading.Lock()
        self._apply(self._initial, reseed=True)
        self._reset_stats()

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def reset(self) -> None:
        """Back to the settings the app was built with, with fresh stats and RNG."""
        with self._lock:
            self._apply(self._initial, reseed=True)
            self._reset_stats()

    def configure(self, changes: dict[str, Any]) -> SandboxConfig:
        """Validate and apply a partial config; raises pydantic.ValidationError."""
        with self._lock:
            merged = SandboxConfig.model_validate({**self._config.model_dump(), **changes})
            if merged.rate_limit_per_minute != self._config.rate_limit_per_minute:
                self._bucket = TokenBucket(merged.rate_limit_per_minute, self._clock)
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
        """A pre-handler fault: one draw decides 500, 503 or nothing."""
        with self._lock:
            p500 = self._config.error_500_probability
            p503 = self._config.error_503_probability
            if p500 + p503 <= 0:
                return None
            roll = self._rng.random()
            kind: Literal["500", "503"] | None = (
                "500" if roll < p500 else "503" if roll < p500 + p503 else None
            )
            if kind is not None:
                self._faults[kind] += 1
            return kind

    def draw(self, kind: Literal["commit_then_fail", "non_json", "slow"]) -> bool:
        """One seeded draw for this fault; no draw at all when its probability is zero."""
        with self._lock:
            probability = {
                "commit_then_fail": self._config.commit_then_fail_probability,
                "non_json": self._config.non_json_probability,
                "slow": self._config.slow_probability,
            }[kind]
            if probability <= 0 or self._rng.random() >= probability:
                return False
            self._faults[kind] += 1
            return True

    def count_call(self, endpoint: str) -> None:
        with self._lock:
            self._calls[endpoint] += 1

    def count_write(self, *, created: bool) -> None:
        with self._lock:
            self._writes += 1
            self._creates += int(created)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(sorted(self._calls.items())),
                "writes": self._writes,
                "creates": self._creates,
                "rate_limited": self._rate_limited,
                "faults_injected": sum(self._faults.values()),
                "faults": {k: self._faults[k] for k in FAULT_KINDS},
            }

    def _apply(self, config: SandboxConfig, *, reseed: bool) -> None:
        self._config = config
        if reseed:
            self._rng = random.Random(config.seed)  # noqa: S311 - fault injection, not crypto

    def _reset_stats(self) -> None:
        self._calls: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._writes = 0
        self._creates = 0
        self._rate_limited = 0
        self._bucket = TokenBucket(self._config.rate_limit_per_minute, self._clock)
