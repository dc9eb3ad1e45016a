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
- Fixed mode: `per_minute` is the account's known limit. The first 429 of a hold multiplies
  the rate by `decrease_factor` (down to `floor_share` of it); it climbs back linearly to it.
- Adaptive mode (AIMD, for an account whose real limit nobody told us): `per_minute` is only
  the start and `max_per_minute` the ceiling. While the fleet's calls keep the schedule busy
  (the limiter, not the demand, is what paces them) the rate grows: doubling every
  `slow_start_doubling_seconds` until the first 429, then additively by `increase_share` of
  the rate set at the last decrease, per second. The first 429 of a hold cuts it to
  `adaptive_decrease_factor` of itself, or lower when the calls accepted since the previous
  429 (at most `estimate_window_seconds` ago) say so: two 429s in a row mean the provider's
  bucket was empty at both, so what it accepted in between is its real rate (unless that is
  under half the rate: the window then held idle spells). After a hold the fleet resumes
  without a burst. Every process
  shares the same rate, so the fleet as a whole converges, not each worker on its own.
"""

from __future__ import annotations

import hashlib
import math
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
local adaptive = ARGV[11] == 'adaptive'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('HMGET', key, 'tat', 'btat', 'hold', 'rate', 'rate_at', 'rtw', 'base',
  'h0', 'n')
local tat = tonumber(s[1]) or now
local btat = tonumber(s[2]) or now
local hold = tonumber(s[3]) or 0
local rate = tonumber(s[4]) or (adaptive and tonumber(ARGV[12]) or ceiling)
local rate_at = tonumber(s[5]) or now
local rtw = tonumber(s[6]) or 0
local function us(x) return string.format('%.0f', x) end
local ttl = tonumber(ARGV[10])
if adaptive then
  -- Grow only while calls are refused for want of a slot (the limiter, not the demand, paces
  -- the fleet), by at most one interval per refusal: an idle fleet learns nothing.
  if op == 'acquire' and now >= hold and math.max(tat, now) + 1000000 / rate - now
      > burst * 1000000 / rate then
    local grown_at = tonumber(redis.call('HGET', key, 'ga')) or now
    local dt = math.min(1000000 / rate, math.max(0, now - grown_at)) / 1000000
    local base = tonumber(s[7])
    if base == nil then
      rate = rate * (1 + tonumber(ARGV[14]) * dt)
    else
      rate = rate + tonumber(ARGV[13]) * base * dt
    end
    rate = math.min(ceiling, rate)
    redis.call('HSET', key, 'rate', string.format('%.6f', rate), 'ga', us(now))
  end
else
  rate = math.min(ceiling, rate + recovery * math.max(0, now - rate_at) / 1000000)
end
if op == 'penalize' then
  local till = now + tonumber(ARGV[8])
  if adaptive then
    local n = tonumber(s[9]) or 0
    if hold <= now then
      local cut = rate * tonumber(ARGV[15])
      local h0 = tonumber(s[8])
      local window = now - (h0 or now)
      local accepted = n * 1000000 / math.max(window, 1)
      -- Far below the rate, the window held idle spells (the provider's bucket refilled
      -- past what it can hold): then the count says nothing about the limit.
      if h0 and window > 0 and window <= tonumber(ARGV[16]) and accepted >= 0.5 * rate then
        cut = math.min(cut, accepted * tonumber(ARGV[17]))
      end
      rate = math.max(floor, cut)
      -- After the hold the fleet resumes at the new rate without a burst: the provider's
      -- bucket is empty, a burst would only collect more 429s.
      redis.call('HSET', key, 'rate', string.format('%.6f', rate), 'base',
        string.format('%.6f', rate), 'h0', us(now), 'n', 0,
        'tat', us(till + (burst - 1) * 1000000 / rate))
    else
      redis.call('HSET', key, 'n', math.max(0, n - 1))
    end
  elseif hold <= now then
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
  end
  redis.call('EXPIRE', key, ttl)
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
if adaptive then
  redis.call('HINCRBY', key, 'n', 1)
end
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
        ceiling = settings.ceiling_per_minute / 60.0
        self._ceiling = ceiling
        self._start = settings.per_minute / 60.0
        # Adaptive: the floor is a share of the start, since the ceiling may be far above it.
        floor_of = ceiling if settings.mode == "fixed" else self._start
        self._floor = floor_of * settings.floor_share
        self._recovery = (ceiling - self._floor) / settings.recovery_seconds
        self._growth = math.log(2) / settings.slow_start_doubling_seconds

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
            s.mode,
            repr(self._start),
            repr(s.increase_share),
            repr(self._growth),
            repr(s.adaptive_decrease_factor),
            int(s.estimate_window_seconds * MICRO),
            repr(s.estimate_margin),
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
