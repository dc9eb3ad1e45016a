"""Leading and trailing edge: a quiet customer runs at once, a burst waits for its window."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
import redis

from worker.ratelimit.pacing import LocalPacer, RedisPacer, delays, schedule


def test_schedule_runs_the_first_at_once_and_gathers_the_rest_at_the_window_end() -> None:
    window = 0.5
    last = None
    runs = []
    # A burst at 0, 0.1, 0.2, one at 0.7 (in the window after the trailing apply at 0.5),
    # then a quiet customer again at 5.0
    for now in (0.0, 0.1, 0.2, 0.7, 5.0):
        last = schedule(last, now, window)
        runs.append(last)
    assert runs == [0.0, 0.5, 0.5, 1.0, 5.0]


def test_schedule_never_runs_a_customer_twice_within_a_window() -> None:
    last = None
    due_times: set[float] = set()
    for step in range(200):
        last = schedule(last, step * 0.037, 0.5)
        due_times.add(round(last, 6))
    ordered = sorted(due_times)
    assert all(b - a >= 0.5 - 1e-9 for a, b in itertools.pairwise(ordered))


def test_local_pacer_delays_by_the_schedule() -> None:
    now = [10.0]
    pacer = LocalPacer(0.5, clock=lambda: now[0])
    assert pacer.delay("c1") == 0.0
    now[0] = 10.1
    assert pacer.delay("c1") == pytest.approx(0.4)
    assert pacer.delay("c2") == 0.0  # another customer is not held back
    now[0] = 11.0
    assert pacer.delay("c1") == 0.0


def test_redis_pacer_shares_the_schedule_across_processes(redis_url: str) -> None:
    prefix = f"test:pace:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    first, second = RedisPacer(client, prefix, 5.0), RedisPacer(client, prefix, 5.0)
    # The first event of a customer runs at once; the next (another worker) waits the window
    assert first.delay("c1") == 0.0
    wait = second.delay("c1")
    assert 4.0 < wait <= 5.0
    # A third in the same window rides along with the same trailing apply
    assert 3.9 < first.delay("c1") <= wait
    assert second.delay("c2") == 0.0
    # only hashed ids: no key holds the raw id as a segment (hex digests may contain "c1")
    assert not any(b"c1" in key.split(b":") for key in client.keys(f"{prefix}:*"))


def test_redis_pacer_forgets_a_customer_quiet_for_a_window(redis_url: str) -> None:
    pacer = RedisPacer(redis.Redis.from_url(redis_url), f"test:pace:{uuid.uuid4().hex}", 0.2)
    assert pacer.delay("c1") == 0.0
    assert pacer.delay("c1") > 0.0
    time.sleep(0.7)  # past the trailing apply and a window more: the key has expired
    assert pacer.delay("c1") == 0.0


def test_an_unreachable_redis_paces_nothing() -> None:
    pacer = RedisPacer(redis.Redis(port=1, socket_connect_timeout=0.2), "p", 0.5)
    assert pacer.delay("c1") == 0.0


def test_a_group_is_paced_in_one_round_trip_as_one_by_one(redis_url: str) -> None:
    # Given a customer applied just now, and a group holding it, a new one, and it again
    client = redis.Redis.from_url(redis_url)
    pacer = RedisPacer(client, f"test:pace:{uuid.uuid4().hex}", 5.0)
    assert pacer.delay("c1") == 0.0
    sent: list[int] = []
    original = client.pipeline

    def counting_pipeline(**options: object) -> redis.client.Pipeline:
        sent.append(1)
        return original(**options)  # type: ignore[arg-type]

    client.pipeline = counting_pipeline  # type: ignore[method-assign]
    # When the group is paced
    c1, c2, c1_again = delays(pacer, ["c1", "c2", "c1"])
    # Then, in one pipeline, c1 waits for its window's end, c2 runs now, c1 again rides along
    assert sent == [1]
    assert 4.0 < c1 <= 5.0 and c2 == 0.0 and 3.9 < c1_again <= c1


def test_an_unreachable_redis_paces_no_group() -> None:
    pacer = RedisPacer(redis.Redis(port=1, socket_connect_timeout=0.2), "p", 0.5)
    assert delays(pacer, ["c1", "c2"]) == [0.0, 0.0]
    assert delays(LocalPacer(0.5, clock=lambda: 10.0), ["c1", "c1"]) == [0.0, 0.5]
