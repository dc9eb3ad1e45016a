"""The process harness of tests/tasks, with a fast sweeper and short pass claims."""

from __future__ import annotations

import pytest

from tests.tasks.conftest import _proc_sandbox, harness, sandbox

__all__ = ["_proc_sandbox", "harness", "sandbox"]

# A swept event is stale after this many seconds; short, so a flushed broker costs little.
SWEEP_STALE_AFTER_SECONDS = 2
# Longer than any provider call here (40 ms latency, client retries included).
CLAIM_SECONDS = 5


@pytest.fixture(autouse=True)
def _fast_sweeper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set before `harness` reads the environment (autouse fixtures come first)."""
    monkeypatch.setenv("PASSSYNC_SYNC__SWEEP_INTERVAL_SECONDS", "1")
    monkeypatch.setenv("PASSSYNC_SYNC__SWEEP_STALE_AFTER_SECONDS", str(SWEEP_STALE_AFTER_SECONDS))
    # A SIGKILLed worker's passes are claimed until this lease lapses (default 10 s).
    monkeypatch.setenv("PASSSYNC_SYNC__CLAIM_SECONDS", str(CLAIM_SECONDS))
