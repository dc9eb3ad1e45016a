"""The worker's main process forgets the time limits of finished tasks (its memory stays flat).

Under the prefork pool with an event loop (Redis, RabbitMQ), Celery arms a timer per task for
its soft time limit (`task_soft_time_limit`: half the visibility timeout, about half an hour)
and cancels it when the task ends; kombu's timer only marks a cancelled entry and keeps it in
its heap until it would have fired. So the main process held every task of the last half hour
(about 0.5 KB each: the entry, its heap slot, its arguments and a weak proxy): linear growth
for thirty minutes, then a plateau of tasks per second x 1,800 entries (hundreds of MB at a few
hundred tasks a second). Found with tracemalloc in `bench.memory --process`; known upstream
(celery/celery#1129, #5200). This step drops the cancelled entries every few seconds.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

# How often the cancelled entries are dropped: at most this many seconds' worth of finished
# tasks is held. The pass sorts the heap (n log n over a few seconds' worth of entries).
DROP_EVERY_SECONDS = 10.0
DROP_EVERY_CONF_KEY = "passsync_drop_timers_seconds"  # the app's conf may say otherwise


def drop_cancelled(timer: Any) -> int:
    """Remove the cancelled entries from a kombu timer's heap, in place; how many went.

    The event loop holds the heap list itself (and its scheduler iterates it), so the list
    is emptied and refilled, never replaced; the live entries keep their time and priority.
    """
    entries = timer.queue  # a sorted copy of the heap: scheduled(eta, priority, entry)
    live = [s for s in entries if not s.entry.canceled]
    if len(live) == len(entries):
        return 0
    timer.clear()
    for item in live:  # in order: each push is O(1), the heap stays valid
        timer.enter_at(item.entry, item.eta, item.priority)
    return len(entries) - len(live)


class DropCancelledTimers(bootsteps.StartStopStep):  # type: ignore[misc]
    """The worker bootstep: `drop_cancelled` on the event loop's timer, every few seconds."""

    requires = {"celery.worker.components:Hub"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._entry: Any = None

    def include_if(self, parent: Any) -> bool:
        # Without an event loop (no Hub) Celery keeps time limits in the pool's own thread.
        return bool(getattr(parent, "use_eventloop", False))

    def start(self, parent: Any) -> None:
        timer = parent.hub.timer
        every = float(parent.app.conf.get(DROP_EVERY_CONF_KEY) or DROP_EVERY_SECONDS)
        self._entry = timer.call_repeatedly(every, drop_cancelled, (timer,))

    def stop(self, parent: Any) -> None:
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None
