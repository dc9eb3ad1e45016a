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


def delays(pacer: Pacer, customer_ids: list[str]) -> list[float]:
    """`pacer.delay` for each customer's event in turn; one Redis round trip when the pacer
    can batch (`delay_many`)."""
    many = getattr(pacer, "delay_many", None)
    if many is not None and len(customer_ids) > 1:  # one customer: one script call
        return list(many(customer_ids))
    return [pacer.delay(customer) for customer in customer_ids]


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
        self._client = client
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

    def delay_many(self, customer_ids: list[str]) -> list[float]:
        """`delay` for each customer's event in turn, in one round trip (a pipeline)."""
        if not customer_ids:
            return []
        window = int(self.window * MICRO)
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for customer in customer_ids:
                    digest = hashlib.sha256(customer.encode()).hexdigest()[:24]
                    self._script(keys=[f"{self._prefix}:{digest}"], args=[window], client=pipe)
                answers = pipe.execute()
        except redis.RedisError:
            return [0.0] * len(customer_ids)  # as `delay`: without Redis, run now
        return [int(wait_us) / MICRO for wait_us in answers]
