"""Long campaigns: pool processes are replaced past a memory bound (Celery's own mechanism)."""

from __future__ import annotations

from collections.abc import Callable

from worker.config import Settings
from worker.tasks.app import celery_app, configure


def test_the_memory_bound_reaches_the_worker_in_kib_and_zero_turns_it_off(
    make_settings: Callable[..., Settings],
) -> None:
    # Given the default settings, then a bound of 250 MB, then none
    configure(make_settings(broker_url="redis://127.0.0.1:6379/15"))
    default = celery_app.conf.worker_max_memory_per_child
    configure(
        make_settings(
            broker_url="redis://127.0.0.1:6379/15", celery={"max_memory_per_child_mb": 250}
        )
    )
    bounded = celery_app.conf.worker_max_memory_per_child
    configure(
        make_settings(broker_url="redis://127.0.0.1:6379/15", celery={"max_memory_per_child_mb": 0})
    )
    off = celery_app.conf.worker_max_memory_per_child
    # Then Celery gets KiB, and 0 means never replace
    assert (default, bounded, off) == (400 * 1024, 250 * 1024, None)
