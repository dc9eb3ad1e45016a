"""The worker's main process drops finished tasks' time-limit timers (memory stays flat)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from celery.concurrency.asynpool import AsynPool
from kombu.asynchronous import Hub
from kombu.asynchronous.timer import Timer

from worker.tasks.app import celery_app

SOFT, HARD = 1795.0, 1800.0  # the app's limits: about half the visibility timeout


def time_limits(hub: Hub) -> Any:
    """Celery's own prefork time-limit handlers (AsynPool's), armed on `hub`."""
    pool = SimpleNamespace(_on_soft_timeout=lambda *a: None, _on_hard_timeout=lambda *a: None)
    AsynPool._create_timelimit_handlers(pool, hub)
    return pool


def jobs(hub: Hub) -> list[int]:
    """The pool jobs that have a live time-limit timer on `hub`."""
    return [
        s.entry.args[0]
        for s in hub.timer.queue
        if not s.entry.canceled and s.entry.args and isinstance(s.entry.args[0], int)
    ]


def start_worker_steps(hub: Hub) -> list[Any]:
    """Start the app's own worker bootsteps on a worker with an event loop, as Celery does
    (no Redis broker: the Liveness step stays idle; cancelled timers dropped every 50 ms)."""
    parent = SimpleNamespace(use_eventloop=True, hub=hub, timer=hub.timer, steps=[])
    parent.app = SimpleNamespace(conf={"passsync_drop_timers_seconds": 0.05})
    for step_cls in celery_app.steps["worker"]:
        step = step_cls(parent)
        if step.include(parent):
            step.start(parent)
    return list(parent.steps)


def test_a_worker_keeps_no_timer_for_tasks_that_finished() -> None:
    hub = Hub(Timer())
    steps = start_worker_steps(hub)
    pool = time_limits(hub)
    baseline = len(hub.timer)
    # Given 5,000 tasks that ran and finished (their time limits armed, then cancelled by
    # Celery's prefork pool), and one still running
    for job in range(5_000):
        task = SimpleNamespace(_job=job)
        pool.on_timeout_set(task, SOFT, HARD)
        pool.on_timeout_cancel(task)
    pool.on_timeout_set(SimpleNamespace(_job=9_999), SOFT, HARD)
    # (kombu keeps a cancelled entry until it would have fired: this is what grew)
    assert len(hub.timer) == baseline + 5_001
    # When the worker's event loop runs its due timers
    time.sleep(0.1)
    hub.fire_timers(max_timers=50)
    # Then only the running task's time limit and the steps' own timers are left
    assert len(hub.timer) == baseline + 1
    assert jobs(hub) == [9_999]
    # And a stopped worker stops dropping
    for step in steps:
        step.stop(None)
    assert [s.entry.canceled for s in hub.timer.queue] == [True, False]  # ours; the task's


def test_dropping_keeps_the_live_entries_in_order_and_the_heap_list_in_place() -> None:
    from worker.tasks.timers import drop_cancelled

    timer = Timer()
    fired: list[str] = []
    heap = timer._queue  # the event loop iterates this very list
    # Given live and cancelled entries, two of them due at the same time
    timer.call_after(30, fired.append, ("c",))
    timer.call_after(10, fired.append, ("a",))
    gone = [timer.call_after(s, fired.append, ("x",)) for s in (5, 10, 20, 40)]
    timer.call_after(20, fired.append, ("b1",))
    timer.call_after(20, fired.append, ("b2",), priority=1)
    for entry in gone:
        entry.cancel()
    # When the cancelled entries are dropped
    dropped = drop_cancelled(timer)
    # Then the live ones keep their times, in order, in the same list
    assert dropped == 4
    assert timer._queue is heap
    order = [s.entry.args[0] for s in timer.queue]
    assert order[0] == "a" and order[-1] == "c" and sorted(order[1:3]) == ["b1", "b2"]
    for item in timer.queue:
        item.entry()
    assert "x" not in fired
    # And nothing to drop changes nothing
    assert drop_cancelled(timer) == 0
    assert len(timer) == 4


def test_no_event_loop_no_step() -> None:
    # A worker without an event loop (solo, threads) keeps its time limits elsewhere.
    from worker.tasks.timers import DropCancelledTimers

    parent = SimpleNamespace(use_eventloop=False, steps=[])
    assert not DropCancelledTimers(parent).include(parent)
