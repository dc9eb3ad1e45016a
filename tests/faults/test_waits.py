"""The fault suite's waits: derived from the lease bounds, failing on a stall, not a clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.helpers import recovery_bound, wait_moving
from worker.config import Settings


class FakeHarness:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir

    def statuses(self) -> dict[str, str]:
        return {"e1": "pending"}


def test_the_recovery_bound_follows_the_settings(make_settings: Callable[..., Settings]) -> None:
    base: dict[str, Any] = {
        "celery": {"visibility_timeout_seconds": 10, "unacked_restore_interval_seconds": 1},
        "sync": {
            "claim_seconds": 5,
            "sweep_interval_seconds": 1,
            "sweep_stale_after_seconds": 2,
            "retry_max_seconds": 2,
            "coalesce_window_ms": 1000,
        },
    }
    longer_lease = {**base, "sync": {**base["sync"], "claim_seconds": 30}}
    # visibility, restore interval, its lock left by a killed worker (5), lease, sweeps, retry,
    # window
    assert recovery_bound(make_settings(**base)) == 10 + 1 + 5 + 5 + 1 + 3 * 2 + 2 + 1
    assert (
        recovery_bound(make_settings(**longer_lease)) == recovery_bound(make_settings(**base)) + 25
    )


def test_a_stalled_run_fails_with_what_it_saw(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    harness: Any = FakeHarness(make_settings(), tmp_path)
    with pytest.raises(AssertionError, match=r"waiting for the events.*marks \(3, 1, 0\)"):
        wait_moving(harness, lambda: (False, (3, 1, 0)), "the events", stall_after=0.3)


def test_a_run_that_keeps_moving_is_waited_for_past_the_stall_bound(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # Given progress every poll for ~1 s, four times the stall bound
    harness: Any = FakeHarness(make_settings(), tmp_path)
    counter = itertools.count()

    def state() -> tuple[bool, tuple[int, ...]]:
        n = next(counter)
        return n >= 10, (n, 0, 0)

    wait_moving(harness, state, "the events", stall_after=0.25)
    assert next(counter) == 11
