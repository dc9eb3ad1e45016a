"""Which lane the provider calls of the current task take: realtime (default) or bulk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from worker.ratelimit.limiter import Lane

_lane: ContextVar[Lane] = ContextVar("passsync_ratelimit_lane", default="realtime")


def current_lane() -> Lane:
    return _lane.get()


@contextmanager
def in_lane(lane: Lane) -> Iterator[Lane]:
    """Every provider call inside the block takes a slot from `lane`."""
    token = _lane.set(lane)
    try:
        yield lane
    finally:
        _lane.reset(token)
