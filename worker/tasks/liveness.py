"""Crash recovery of a whole worker: the events a killed worker held are sent again quickly.

Every worker's main process adds the ledger ids of each event task it receives to a Redis
set of its own at once, and every heartbeat (a third of `sync.claim_seconds`) stamps itself
alive in one Redis hash (Redis's clock) and rewrites its set to the tasks it still holds
(running, prefetched, waiting for a countdown). A worker silent for `claim_seconds` is dead
(SIGKILL, a lost machine): the first live worker that removes its entry re-enqueues its set,
and also the never-attempted events older than `claim_seconds` that no live worker holds:
a message the dead worker had taken from Redis but not yet seen is in no set.
The ledger and the pass claims make a duplicate harmless (a finished event is answered as a
duplicate); without this, Redis hands the dead worker's messages back only after the
visibility timeout (an hour by default). RabbitMQ gives a dead consumer's unacknowledged
messages back at once, so on an amqp:// broker this step does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import bootsteps, signals
from celery.worker import state

from worker.brokers import redis_client

log = logging.getLogger("passsync.tasks.liveness")

WORKERS_KEY = "passsync:workers"
EVENT_TASK = "passsync.process_event"
DISPATCH_TASK = "passsync.dispatch_events"
HELD_KEY_PREFIX = "passsync:held:"
HEARTBEAT_CONF_KEY = "passsync_claim_seconds"
LIVENESS_CONF_KEY = "passsync_liveness_redis"  # the Redis broker's URL; none: step is idle


def held_event_ids(requests: list[Any]) -> list[int]:
    """The ledger ids carried by the event tasks among `requests` (Celery requests)."""
    ids: set[int] = set()
    for request in requests:
        args = getattr(request, "args", None) or ()
        if not args:
            continue
        if request.name == EVENT_TASK and isinstance(args[0], int):
            ids.add(args[0])
        elif request.name == DISPATCH_TASK and isinstance(args[0], list):
            ids.update(i for i in args[0] if isinstance(i, int))
    return sorted(ids)


def held_key(node: str) -> str:
    return f"{HELD_KEY_PREFIX}{node}"


def received(client: redis.Redis, node: str, ids: list[int]) -> None:
    """Note at once that `node` holds `ids` (a kill before the next heartbeat loses none)."""
    if ids:
        client.sadd(held_key(node), *ids)


@dataclass
class Orphans:
    """What heartbeat() found: the workers found dead, and the event ids they held."""

    nodes: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)


def heartbeat(client: redis.Redis, node: str, held: list[int], claim_seconds: float) -> Orphans:
    """Record `node` alive holding exactly `held`; what the workers found dead held."""
    seconds, micros = client.time()  # one clock for every machine
    now = seconds + micros / 1e6
    with client.pipeline() as pipe:
        pipe.hset(WORKERS_KEY, node, repr(now))
        pipe.delete(held_key(node))
        if held:
            pipe.sadd(held_key(node), *held)
        pipe.execute()
    orphans = Orphans()
    entries: dict[bytes, bytes] = client.hgetall(WORKERS_KEY)  # type: ignore[assignment]
    for raw_name, raw_at in entries.items():
        name = raw_name.decode(errors="replace")
        try:
            silent = now - float(raw_at)
        except ValueError:
            silent = float("inf")
        # hdel answers 1 to one worker only: that one re-enqueues.
        if silent > claim_seconds and client.hdel(WORKERS_KEY, raw_name):
            with client.pipeline() as pipe:
                pipe.smembers(held_key(name))
                pipe.delete(held_key(name))
                members, _ = pipe.execute()
            ids = sorted(int(i) for i in members)
            log.warning(
                "worker %s stopped (no heartbeat for %.0f s); re-enqueueing the %d events it held",
                name,
                min(silent, 1e9),
                len(ids),
            )
            orphans.nodes.append(name)
            orphans.ids.extend(ids)
    return orphans


def live_held(client: redis.Redis) -> set[int]:
    """Every event id a live worker holds."""
    nodes = [n.decode(errors="replace") for n in client.hkeys(WORKERS_KEY)]  # type: ignore[union-attr]
    if not nodes:
        return set()
    members: set[bytes] = client.sunion([held_key(n) for n in nodes])  # type: ignore[assignment]
    return {int(i) for i in members}


def leave(client: redis.Redis, node: str) -> None:
    """A worker stopping cleanly hands its messages back itself: forget its entry."""
    with client.pipeline() as pipe:
        pipe.hdel(WORKERS_KEY, node)
        pipe.delete(held_key(node))
        pipe.execute()


class Liveness(bootsteps.StartStopStep):  # type: ignore[misc]
    """The worker bootstep: a heartbeat on the worker's own timer (its main event loop)."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None
        self._client: redis.Redis | None = None
        self._node = ""
        self._claim_seconds = 10.0

    def start(self, parent: Any) -> None:
        conf = parent.app.conf
        url = conf.get(LIVENESS_CONF_KEY)
        if not url:
            return
        self._claim_seconds = float(conf.get(HEARTBEAT_CONF_KEY) or 10.0)
        self._client = redis_client(url)
        self._node = f"{parent.hostname}:{os.getpid()}"
        signals.task_received.connect(self._received, weak=False)
        self._beat()
        self._timer = parent.timer.call_repeatedly(self._claim_seconds / 3, self._beat)

    def stop(self, parent: Any) -> None:
        if self._client is None:
            return
        signals.task_received.disconnect(self._received)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # On failure the entry goes stale: its events finished or were handed back.
        with contextlib.suppress(redis.RedisError):
            leave(self._client, self._node)

    def _received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        if self._client is None or request is None:
            return
        try:
            received(self._client, self._node, held_event_ids([request]))
        except redis.RedisError as exc:
            log.warning("worker heartbeat failed: %s", type(exc).__name__)

    def _beat(self) -> None:
        if self._client is None:
            return
        try:
            held = held_event_ids(list(state.requests.values()))
            orphans = heartbeat(self._client, self._node, held, self._claim_seconds)
            if not orphans.nodes:
                return
            busy = live_held(self._client)
        except redis.RedisError as exc:
            log.warning("worker heartbeat failed: %s", type(exc).__name__)
            return
        from worker.tasks.jobs import recover_events  # noqa: PLC0415 - jobs imports app

        try:
            recover_events(orphans.ids, exclude=busy)
        except Exception as exc:  # the sweeper sends them later
            log.warning("could not re-enqueue a dead worker's events: %s", type(exc).__name__)
