"""The shared limiter against the machine's Redis: budget, lanes, holds and the adaptive rate."""

from __future__ import annotations

import multiprocessing
import time
import uuid

import pytest
import redis

from worker.config import RateLimitSettings
from worker.providers.errors import TransientError
from worker.ratelimit.limiter import LimiterBusyError, SharedLimiter, account_key


def limiter(url: str, key: str, **overrides: object) -> SharedLimiter:
    settings = RateLimitSettings.model_validate(overrides)
    return SharedLimiter(redis.Redis.from_url(url), key, settings)


@pytest.fixture
def key() -> str:
    return f"test:rl:{uuid.uuid4().hex}"


def test_grants_the_burst_then_refuses_with_the_wait_until_the_next_slot(
    redis_url: str, key: str
) -> None:
    # Given 60 per minute (one per second) with a burst of 3
    rl = limiter(redis_url, key, per_minute=60, burst=3)
    # When four calls come at once
    decisions = [rl.try_acquire("realtime") for _ in range(4)]
    # Then three pass and the fourth must wait (at most one interval)
    assert [d.granted for d in decisions] == [True, True, True, False]
    assert 0 < decisions[3].wait_seconds <= 1.0
    assert decisions[3].rate_per_second == 1.0


def test_acquire_past_its_bound_raises_busy_without_taking_a_slot(redis_url: str, key: str) -> None:
    # Given a spent budget of one call per second and a worker bound of 0.1 s
    slept: list[float] = []
    rl = SharedLimiter(
        redis.Redis.from_url(redis_url),
        key,
        RateLimitSettings(per_minute=60, burst=1, max_wait_seconds=0.1),
        sleep=slept.append,
    )
    assert rl.try_acquire().granted
    # When the worker asks for the next slot
    with pytest.raises(LimiterBusyError) as caught:
        rl.acquire()
    # Then it gives up at once (no sleep) with the wait as its retry_after
    assert slept == []
    assert 0.1 < caught.value.retry_after <= 1.0
    assert caught.value.status is None


def _hammer(url: str, key: str, grants: int, out: multiprocessing.Queue[list[float]]) -> None:
    rl = limiter(url, key, per_minute=6000, burst=5, max_wait_seconds=30)
    out.put([rl.acquire("bulk").server_time for _ in range(grants)])


def test_two_processes_never_exceed_the_budget_over_any_window(redis_url: str, key: str) -> None:
    # Given two processes sharing 100 calls per second with a burst of 5
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[float]] = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(redis_url, key, 100, out)) for _ in range(2)]
    # When each takes 100 slots as fast as it can
    for proc in procs:
        proc.start()
    times = sorted(out.get(timeout=60) + out.get(timeout=60))
    for proc in procs:
        proc.join(timeout=10)
    # Then over every window (by the Redis server's clock) at most burst + rate * window pass
    assert len(times) == 200
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            window = times[j] - start
            assert j - i + 1 <= 5 + 100 * window + 1e-6, (i, j, window)
    # And the pace is the budget's: 200 grants need at least (200 - 5) / 100 seconds
    assert times[-1] - times[0] >= 1.95 - 1e-3


def test_a_429_holds_every_worker_and_cuts_the_rate_once_per_hold(redis_url: str, key: str) -> None:
    # Given two workers' limiters on one budget of 600/min
    first = limiter(redis_url, key, per_minute=600, burst=10)
    second = limiter(redis_url, key, per_minute=600, burst=10)
    # When the first reports a 429 with Retry-After 2 s, and another of the same storm follows
    first.penalize(2.0)
    second.penalize(2.0)
    # Then the other worker is refused for the rest of the hold, in both lanes
    for lane in ("realtime", "bulk"):
        refused = second.try_acquire(lane)  # type: ignore[arg-type]
        assert not refused.granted
        assert 1.5 < refused.wait_seconds <= 2.0
    # And the rate was cut once (10/s -> 5/s), not once per report
    assert second.state().rate_per_second == 5.0


def test_the_cut_rate_climbs_back_to_the_ceiling_and_never_above(redis_url: str, key: str) -> None:
    # Given a rate cut by a 429 with a short hold and a fast recovery
    rl = limiter(redis_url, key, per_minute=600, recovery_seconds=0.3, decrease_factor=0.5)
    rl.penalize(0.05)
    assert rl.state().rate_per_second == 5.0
    # When no 429 follows for longer than the recovery time
    time.sleep(0.5)
    # Then the rate is back at the configured ceiling, not beyond
    assert rl.state().rate_per_second == 10.0


def test_the_rate_never_falls_below_its_floor(redis_url: str, key: str) -> None:
    rl = limiter(redis_url, key, per_minute=600, floor_share=0.25, recovery_seconds=3600)
    for _ in range(5):
        rl.penalize(0.0)  # each one starts a new (empty) hold, so each cuts
    assert rl.state().rate_per_second == 2.5


def test_bulk_cannot_take_the_realtime_share_while_realtime_waits(redis_url: str, key: str) -> None:
    # Given 10/s, no burst, half the rate reserved for waiting realtime calls
    rl = limiter(redis_url, key, per_minute=600, burst=1, realtime_share=0.5)
    assert rl.try_acquire("bulk").granted
    # When a realtime call is refused (bulk took the slot) and the next slot comes
    waiting = rl.try_acquire("realtime")
    assert not waiting.granted
    time.sleep(waiting.wait_seconds + 0.005)
    # Then bulk may not take it (it is over its reduced rate), and realtime gets it
    assert not rl.try_acquire("bulk").granted
    assert rl.try_acquire("realtime").granted


def test_without_a_waiting_realtime_call_bulk_uses_the_whole_rate(redis_url: str, key: str) -> None:
    rl = limiter(redis_url, key, per_minute=600, burst=1, realtime_share=0.5)
    first = rl.try_acquire("bulk")
    assert first.granted
    refused = rl.try_acquire("bulk")
    assert not refused.granted and refused.wait_seconds <= 0.1
    time.sleep(refused.wait_seconds + 0.005)
    assert rl.try_acquire("bulk").granted


def test_an_unreachable_redis_is_a_transient_error() -> None:
    # Given a limiter pointing at a port nobody listens on
    rl = SharedLimiter(
        redis.Redis(port=1, socket_connect_timeout=0.2), "k", RateLimitSettings(), sleep=print
    )
    # Then a call is a transient failure (the task retries), never a silent pass
    with pytest.raises(TransientError, match="rate limiter unavailable"):
        rl.try_acquire()


def test_one_budget_per_account_and_the_key_never_holds_the_secret() -> None:
    a = account_key("p", "passcreator", "https://x|secret-one")
    b = account_key("p", "passcreator", "https://x|secret-two")
    assert a != b
    assert a.startswith("p:passcreator:") and "secret" not in a
    assert a == account_key("p", "passcreator", "https://x|secret-one")


# -- adaptive mode ------------------------------------------------------------------------------


def _busy(rl: SharedLimiter, seconds: float) -> int:
    """Ask for slots as fast as possible for `seconds`: demand above any rate; grants."""
    granted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        granted += rl.try_acquire("realtime").granted
    return granted


def test_adaptive_starts_at_per_minute_and_an_idle_fleet_does_not_grow(
    redis_url: str, key: str
) -> None:
    # Given an adaptive limiter starting at 600/min (10/s) with a fast slow start
    rl = limiter(redis_url, key, mode="adaptive", per_minute=600, slow_start_doubling_seconds=0.2)
    # When one call is made, then nothing for longer than several doublings
    assert rl.try_acquire().rate_per_second == 10.0
    time.sleep(0.6)
    # Then the rate has not moved: only calls that keep the schedule busy teach it anything
    assert rl.try_acquire().rate_per_second == 10.0


def test_adaptive_grows_while_busy_up_to_the_ceiling_never_beyond(redis_url: str, key: str) -> None:
    # Given adaptive from 600/min with a ceiling of 1200/min, doubling every 0.2 busy seconds
    rl = limiter(
        redis_url,
        key,
        mode="adaptive",
        per_minute=600,
        max_per_minute=1200,
        slow_start_doubling_seconds=0.2,
    )
    # When the demand exceeds the rate for a second (five doublings' worth)
    _busy(rl, 1.0)
    # Then the rate stopped at the ceiling: 20/s
    assert rl.state().rate_per_second == 20.0


def test_adaptive_without_a_ceiling_grows_to_four_times_the_start(redis_url: str, key: str) -> None:
    rl = limiter(redis_url, key, mode="adaptive", per_minute=600, slow_start_doubling_seconds=0.1)
    _busy(rl, 1.0)
    assert rl.state().rate_per_second == 40.0


def test_fixed_mode_never_grows_past_per_minute(redis_url: str, key: str) -> None:
    rl = limiter(redis_url, key, per_minute=600, max_per_minute=2400)
    _busy(rl, 0.5)
    assert rl.state().rate_per_second == 10.0


def test_a_lone_429_cuts_the_adaptive_rate_by_its_factor_once_per_hold(
    redis_url: str, key: str
) -> None:
    # Given two workers of one adaptive fleet at 1200/min
    first = limiter(redis_url, key, mode="adaptive", per_minute=1200)
    second = limiter(redis_url, key, mode="adaptive", per_minute=1200)
    assert first.try_acquire().granted
    # When both report the 429 of one storm (Retry-After 0.2 s)
    first.penalize(0.2)
    held = second.penalize(0.2)
    # Then the rate was cut once to 0.9 of itself (no earlier 429 to estimate from)
    assert held.rate_per_second == 18.0
    assert not second.try_acquire().granted  # and the fleet is held
    assert first.state().rate_per_second == 18.0


def test_a_second_429_sets_the_rate_to_what_the_provider_accepted_in_between(
    redis_url: str, key: str
) -> None:
    # Given an adaptive limiter above the provider's real rate (20/s vs a bucket that, once
    # empty, accepted 12 calls between two 429s about 1 s apart)
    rl = limiter(
        redis_url,
        key,
        mode="adaptive",
        per_minute=1200,
        burst=100,
        estimate_margin=0.95,
        estimate_window_seconds=30,
    )
    rl.penalize(0.0)  # the first 429: the provider's bucket is empty now
    assert rl.state().rate_per_second == 18.0
    started = time.monotonic()
    for _ in range(12):
        assert rl.acquire().granted  # paced at 18/s, no burst after the hold
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    # When the next 429 comes
    cut = rl.penalize(0.0)
    elapsed = time.monotonic() - started
    # Then the rate is 0.95 x the accepted rate (12 calls over ~1 s), not 0.9 x 18
    assert 0.95 * 12 / (elapsed + 0.05) <= cut.rate_per_second <= 0.95 * 12 / 0.99


def test_an_accepted_rate_under_half_the_rate_is_not_trusted(redis_url: str, key: str) -> None:
    # Given two 429s with only 2 calls between them at 18/s (idle spells in between: the
    # provider's bucket may have been full, so the count says nothing about its limit)
    rl = limiter(redis_url, key, mode="adaptive", per_minute=1200, burst=100)
    rl.penalize(0.0)
    for _ in range(2):
        assert rl.acquire().granted
    time.sleep(0.5)
    # Then the second 429 cuts by the plain factor: 18 -> 16.2
    assert rl.penalize(0.0).rate_per_second == 16.2


def test_after_a_hold_the_adaptive_fleet_resumes_without_a_burst(redis_url: str, key: str) -> None:
    # Given an adaptive limiter with a burst of 10 held by a 429 for 0.1 s
    rl = limiter(redis_url, key, mode="adaptive", per_minute=600, burst=10)
    rl.penalize(0.1)  # 10/s -> 9/s
    time.sleep(0.12)
    # When the hold is over, one call passes and the next waits an interval (not 9 more)
    assert rl.try_acquire().granted
    refused = rl.try_acquire()
    assert not refused.granted
    assert 0.05 < refused.wait_seconds <= 1 / 9 + 0.01


def test_an_estimate_older_than_its_window_is_not_trusted(redis_url: str, key: str) -> None:
    # Given two 429s further apart than the estimate window (the provider's bucket may
    # have refilled in between, so the accepted count says nothing)
    rl = limiter(redis_url, key, mode="adaptive", per_minute=600, estimate_window_seconds=0.1)
    rl.penalize(0.0)
    assert rl.try_acquire().granted
    time.sleep(0.2)
    # When the second 429 comes, the cut is the plain factor: 10 -> 9 -> 8.1
    assert rl.penalize(0.0).rate_per_second == 8.1


def test_after_a_cut_the_rate_grows_additively_by_its_share_of_the_cut_rate(
    redis_url: str, key: str
) -> None:
    # Given an adaptive rate cut to 54/s, growing by 0.5 x 54 per busy second
    rl = limiter(redis_url, key, mode="adaptive", per_minute=3600, increase_share=0.5)
    rl.penalize(0.0)
    assert rl.state().rate_per_second == 54.0
    # When the fleet stays busy for about 0.4 s
    started = time.monotonic()
    _busy(rl, 0.4)
    elapsed = time.monotonic() - started
    # Then the rate grew linearly (not doubling): 54 + 27 per second, to the ceiling at most
    grown = rl.state().rate_per_second
    assert 54 + 27 * (elapsed - 0.15) <= grown <= 54 + 27 * elapsed + 0.01


def test_adaptive_never_cuts_below_its_floor(redis_url: str, key: str) -> None:
    rl = limiter(
        redis_url,
        key,
        mode="adaptive",
        per_minute=600,
        max_per_minute=600,
        floor_share=0.5,
        estimate_window_seconds=0.001,
    )
    for _ in range(20):
        rl.penalize(0.0)
    assert rl.state().rate_per_second == 5.0
