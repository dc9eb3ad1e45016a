"""Worker heartbeats: a dead worker's held events are handed to exactly one live worker."""

from __future__ import annotations

from types import SimpleNamespace

import redis

from worker.tasks.liveness import (
    WORKERS_KEY,
    heartbeat,
    held_event_ids,
    held_key,
    leave,
    live_held,
    received,
)


def test_held_ids_are_read_from_event_and_dispatch_tasks_only() -> None:
    requests = [
        SimpleNamespace(name="passsync.process_event", args=[7]),
        SimpleNamespace(name="passsync.process_event", args=[3]),
        SimpleNamespace(name="passsync.dispatch_events", args=[[5, 7, 9]]),
        SimpleNamespace(name="passsync.campaign_chunk", args=[1, "chunk"]),
        SimpleNamespace(name="passsync.process_event", args=[]),
    ]
    assert held_event_ids(requests) == [3, 5, 7, 9]


def test_a_worker_silent_for_the_lease_is_dead_and_recovered_once(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    # Given a worker that last beat 11 s ago holding events 4 and 5, then received event 8
    # just before it died, and a worker that beat 2 s ago
    seconds, _ = client.time()
    client.hset(WORKERS_KEY, "w-dead:1", repr(float(seconds - 11)))
    client.sadd(held_key("w-dead:1"), 4, 5)
    received(client, "w-dead:1", [8])
    client.hset(WORKERS_KEY, "w-live:2", repr(float(seconds - 2)))
    client.sadd(held_key("w-live:2"), 6)
    # When two live workers beat (lease 10 s)
    first = heartbeat(client, "w-a:3", [1], claim_seconds=10)
    second = heartbeat(client, "w-b:4", [], claim_seconds=10)
    # Then exactly one of them takes every event the dead worker held; the live one is left
    assert (first.nodes, first.ids) == (["w-dead:1"], [4, 5, 8])
    assert (second.nodes, second.ids) == ([], [])
    assert live_held(client) == {1, 6}
    assert sorted(client.hkeys(WORKERS_KEY)) == [b"w-a:3", b"w-b:4", b"w-live:2"]
    assert not client.exists(held_key("w-dead:1"))
    assert client.smembers(held_key("w-a:3")) == {b"1"}
    assert client.smembers(held_key("w-live:2")) == {b"6"}
    # And a beat replaces the set with what the worker still holds
    heartbeat(client, "w-a:3", [2], claim_seconds=10)
    assert client.smembers(held_key("w-a:3")) == {b"2"}
    # And a worker stopping cleanly removes its own entry
    leave(client, "w-a:3")
    assert sorted(client.hkeys(WORKERS_KEY)) == [b"w-b:4", b"w-live:2"]
    assert not client.exists(held_key("w-a:3"))


def test_a_garbled_entry_is_dropped_not_fatal(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.hset(WORKERS_KEY, "w-bad:1", "not a time")
    assert heartbeat(client, "w-a:2", [], claim_seconds=10).ids == []
    assert client.hkeys(WORKERS_KEY) == [b"w-a:2"]
