"""One provider budget for the whole fleet: GCRA in a Redis Lua script, with lanes and holds.

Every decision is one atomic script run on the Redis server, timed by the server's own clock
(`TIME`), so workers on machines with skewed clocks share one schedule:

- GCRA (the generic cell rate algorithm): a theoretical arrival time `tat` moves one
  interval (1/rate) per granted call; a call is refused while `tat` is more than `burst`
  intervals ahead. Over any window of W seconds at most `burst + rate * W` calls pass.
- Lanes: realtime calls only need the global budget. Bulk calls also pass a second GCRA
  at `(1 - realtime_share) * rate` that is enforced only while a realtime call is waiting,
  so bulk work can never take that share from a waiting realtime call.
- Hold: a 429 sets `hold` (Retry-After from now): every worker is refused until then.
- Adaptive rate: the first 429 of a hold multiplies the rate by `decrease_factor` (down to
  `floor_share` of the ceiling); it climbs back linearly to the configured ceiling.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis

from worker.config import RateLimitSettings
from worker.observability import metrics
from worker.providers.errors import RateLimitedError, TransientError

Lane = Literal["realtime", "bulk"]
LANES: tuple[Lane, ...] = ("realtime", "bulk")
MICRO = 1_000_000
# How long a refused realtime call keeps bulk on its reduced lane beyond its own wait.
REALTIME_FLAG_MARGIN_US = 200_000
KEY_TTL_SECONDS = 3600

SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local lane = ARGV[2]
local ceiling = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local share = tonumber(ARGV[5])
local floor = tonumber(ARGV[6])
local recovery = tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('HMGET', key, 'tat', 'btat', 'hold', 'rate', 'rate_at', 'rtw')
local tat = tonumber(s[1]) or now
local btat = tonumber(s[2]) or now
local hold = tonumber(s[3]) or 0
local rate = tonumber(s[4]) or ceiling
local rate_at = tonumber(s[5]) or now
local rtw = tonumber(s[6]) or 0
local function us(x) return string.format('%.0f', x) end
rate = math.min(ceiling, rate + recovery * math.max(0, now - rate_at) / 1000000)
local ttl = tonumber(ARGV[10])
if op == 'penalize' then
  local till = now + tonumber(ARGV[8])
  if hold <= now then
    rate = math.max(floor, rate * tonumber(ARGV[9]))
    redis.call('HSET', key, 'rate', string.format('%.6f', rate), 'rate_at', us(till))
  end
  if till > hold then
    hold = till
    redis.call('HSET', key, 'hold', us(till))
  end
  redis.call('EXPIRE', key, ttl)
  return {0, hold - now, now, us(rate * 1000)}
end
if op == 'state' then
  return {0, math.max(0, hold - now), now, us(rate * 1000)}
end
if now < hold then
  return {0, hold - now, now, us(rate * 1000)}
end
local interval = 1000000 / rate
local new_tat = math.max(tat, now) + interval
local ahead = new_tat - now - burst * interval
if ahead > 0 then
  if lane == 'realtime' then
    redis.call('HSET', key, 'rtw', us(now + ahead + tonumber(ARGV[8])))
    redis.call('EXPIRE', key, ttl)
  end
  return {0, ahead, now, us(rate * 1000)}
end
if lane == 'bulk' then
  local binterval = 1000000 / (rate * (1 - share))
  local new_btat = math.max(btat, now) + binterval
  if rtw > now then
    if new_btat - now > binterval then
      return {0, new_btat - now - binterval, now, us(rate * 1000)}
    end
  else
    new_btat = math.min(new_btat, now + binterval)
  end
  redis.call('HSET', key, 'btat', us(new_btat))
end
redis.call('HSET', key, 'tat', us(new_tat))
redis.call('EXPIRE', key, ttl)
return {1, 0, now, us(rate * 1000)}
"""


class LimiterBusyError(RateLimitedError):
    """No slot within the worker's bound: put the work back on the queue for `retry_after`.

    A RateLimitedError, so the tasks retry it without using up an attempt.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"shared rate limit: next slot in {retry_after:.2f}s",
            retry_after=retry_after,
            status=None,
        )


@dataclass(frozen=True)
class Decision:
    granted: bool
    wait_seconds: float
    server_time: float  # the Redis server's clock, seconds since the epoch
    rate_per_second: float  # the adaptive rate in force


class SharedLimiter:
    """The Redis-backed limiter one process uses; safe to share between its threads."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        settings: RateLimitSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key
        self._settings = settings
        self._script = client.register_script(SCRIPT)
        self._sleep = sleep
        ceiling = settings.per_minute / 60.0
        self._ceiling = ceiling
        self._floor = ceiling * settings.floor_share
        self._recovery = (ceiling - self._floor) / settings.recovery_seconds

    def try_acquire(self, lane: Lane = "realtime") -> Decision:
        """One atomic attempt: a slot now, or how long until one may be free."""
        return self._run("acquire", lane, REALTIME_FLAG_MARGIN_US)

    def acquire(self, lane: Lane = "realtime", *, max_wait: float | None = None) -> Decision:
        """Wait (sleeping at most `max_wait` in total) for a slot; LimiterBusyError beyond."""
        budget = self._settings.max_wait_seconds if max_wait is None else max_wait
        while True:
            decision = self.try_acquire(lane)
            metrics.limiter_rate(decision.rate_per_second)
            if decision.granted:
                return decision
            if decision.wait_seconds > budget:
                metrics.limiter_busy(lane)
                raise LimiterBusyError(decision.wait_seconds)
            metrics.limiter_waited(lane, decision.wait_seconds)
            self._sleep(decision.wait_seconds)
            budget -= decision.wait_seconds

    def penalize(self, retry_after: float) -> Decision:
        """The provider answered 429: hold every worker for `retry_after` and cut the rate."""
        decision = self._run("penalize", "realtime", int(max(retry_after, 0.0) * MICRO))
        metrics.limiter_hold()
        metrics.limiter_rate(decision.rate_per_second)
        return decision

    def state(self) -> Decision:
        """The hold still in force (as wait_seconds) and the current rate; changes nothing."""
        return self._run("state", "realtime", 0)

    def _run(self, op: str, lane: Lane, extra_us: int) -> Decision:
        s = self._settings
        args: list[Any] = [
            op,
            lane,
            repr(self._ceiling),
            s.burst,
            repr(s.realtime_share),
            repr(self._floor),
            repr(self._recovery),
            extra_us,
            repr(s.decrease_factor),
            KEY_TTL_SECONDS,
        ]
        try:
            granted, wait_us, now_us, rate_milli = self._script(keys=[self.key], args=args)
        except redis.RedisError as exc:
            raise TransientError(
                f"shared rate limiter unavailable ({type(exc).__name__})"
            ) from None
        return Decision(
            granted=bool(granted),
            wait_seconds=int(wait_us) / MICRO,
            server_time=int(now_us) / MICRO,
            rate_per_second=int(rate_milli) / 1000,
        )


def account_key(prefix: str, provider: str, account: str) -> str:
    """One budget per provider account; the account (its API key) is only hashed in."""
    digest = hashlib.sha256(account.encode()).hexdigest()[:16]
    return f"{prefix}:{provider}:{digest}"
