"""When a customer's event may run: leading and trailing edge, one apply per window.

The first event of a quiet customer runs at once (the leading edge). An event that arrives
within `window` of the customer's last scheduled apply waits for the window's end (the
trailing edge), where the one that runs first applies itself and every newer event of the
customer in one call (the engine's coalescing); the others find themselves handled. So a
customer is applied at most once per window, bursts still coalesce, and a quiet system
answers without waiting. The state is one number per customer: the time of its last
scheduled apply.

`RedisPacer` keeps it for the whole fleet (one Lua script, timed by the Redis server's
clock); `LocalPacer` in-process (the embedded stack, tests and simulations).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

MICRO = 1_000_000


def schedule(last: float | None, now: float, window: float) -> float:
    """The time the event arriving `now` should run, given the customer's last scheduled
    apply `last`; that time is also the customer's new `last`."""
    if last is None or now >= last + window:
        return now  # leading edge: quiet for a window, run at once
    if now < last:
        return last  # a trailing apply is already scheduled: ride along with it
    return last + window  # within a window of the last apply: at that window's end


class Pacer(Protocol):
    def delay(self, customer_id: str) -> float:
        """Seconds this customer's event should wait before it runs (0: run now)."""
        ...


class LocalPacer:
    """The schedule in this process's memory."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def delay(self, customer_id: str) -> float:
        with self._lock:
            now = self._clock()
            due = schedule(self._last.get(customer_id), now, self.window)
            self._last[customer_id] = due
            if len(self._last) > 100_000:  # forget customers quiet for more than a window
                self._last = {k: v for k, v in self._last.items() if v + self.window > now}
            return due - now


SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]))
local due = now
if last ~= nil and now < last + window then
  if now < last then due = last else due = last + window end
end
redis.call('SET', KEYS[1], string.format('%.0f', due), 'PX',
  math.floor((due - now + window) / 1000) + 1)
return string.format('%.0f', due - now)
"""


class RedisPacer:
    """The schedule shared by every worker of the fleet; customer ids are only hashed in."""

    def __init__(self, client: redis.Redis, prefix: str, window: float) -> None:
        self.window = window
        self._prefix = prefix
        self._script = client.register_script(SCRIPT)

    def delay(self, customer_id: str) -> float:
        digest = hashlib.sha256(customer_id.encode()).hexdigest()[:24]
        try:
            wait_us = self._script(
                keys=[f"{self._prefix}:{digest}"], args=[int(self.window * MICRO)]
            )
        except redis.RedisError:
            # Pacing only saves calls: without Redis the event runs now (still exactly once).
            return 0.0
        return int(wait_us) / MICRO
