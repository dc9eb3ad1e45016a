"""The scan task's policy: a claimed pass is waited for (logged once per scan, no attempt
used), a transient failure retries with bounded backoff (a 429 uses no attempt), a refusal is
final."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from tests.scans.test_scans_claims import SYNC_RULES, USAGE, a_scan, event, the_mapping
from worker.config import Settings
from worker.db import Database, utcnow
from worker.providers.errors import RateLimitedError, RejectedError, TransientError
from worker.providers.memory import MemoryProvider
from worker.sync.engine import SyncContext, process_event
from worker.sync.models import PassMapping
from worker.sync.templates import TemplateResolver
from worker.tasks import scans as scan_tasks
from worker.tasks.jobs import WaitingForPass
from worker.tasks.runtime import Runtime, reset_runtime, set_runtime


class Retried(Exception):
    """What the patched `retry` raises: the task asked to run again."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.options = options


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def runtime(
    db: Database, make_settings: Callable[..., Settings], provider: MemoryProvider
) -> Iterator[Runtime]:
    settings: Settings = make_settings(
        database_url=db.url,
        sync={"rules": SYNC_RULES, "coalesce_window_ms": 0, "retry_base_seconds": 0.5},
        usage=USAGE,
    )
    ctx = SyncContext(settings, provider, TemplateResolver(provider))
    built = Runtime(settings=settings, db=db, sync=ctx)
    set_runtime(built)
    with db.session() as session:
        process_event(session, event(db, "e0", 0, "WELCOME10"), ctx)
    provider.calls.clear()
    yield built
    reset_runtime()


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every retry the task asks for (nothing reaches a broker)."""
    asked: list[dict[str, Any]] = []

    def retry(**options: Any) -> Retried:
        asked.append(options)
        return Retried(options)

    monkeypatch.setattr(scan_tasks.process_scan_task, "retry", retry)
    return asked


def run_task(scan_id: int, **kwargs: Any) -> str | dict[str, Any]:
    """The task's answer, or the options of the retry it asked for."""
    try:
        return str(scan_tasks.process_scan_task(scan_id, **kwargs))
    except Retried as retried:
        return retried.options


def test_a_scan_of_a_claimed_pass_waits_and_logs_once(
    db: Database,
    runtime: Runtime,
    retries: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a coupon claimed by another attempt for a while
    with db.session() as session:
        session.execute(
            update(PassMapping)
            .where(PassMapping.pass_key == "welcome")
            .values(claim_token="other", claim_expires_at=utcnow() + timedelta(seconds=5))
        )
    scan_id = a_scan(db, "s1", "welcome")
    # When the scan task runs, then runs its retries three times
    caplog.set_level(logging.INFO, logger="passsync.tasks.scans")
    first = run_task(scan_id)
    again = [run_task(scan_id, **retries[-1]["kwargs"]) for _ in range(3)]
    # Then each run asks to wait (short, no attempt used), and the wait is logged once
    assert isinstance(first, dict)
    assert first["kwargs"] == {"attempt": 0, "waiting": True}
    assert isinstance(first["exc"], WaitingForPass)
    assert 0.05 <= first["countdown"] <= 1.2
    assert [r["kwargs"] for r in again if isinstance(r, dict)] == [
        {"attempt": 0, "waiting": True}
    ] * 3
    waits = [r.getMessage() for r in caplog.records if " waits: " in r.getMessage()]
    assert waits == [f"scan {scan_id} waits: pass 'welcome' is being synced"]
    # When the claim is released, the next retry applies it
    with db.session() as session:
        session.execute(update(PassMapping).values(claim_token=None, claim_expires_at=None))
    assert run_task(scan_id, attempt=0, waiting=True) == "accepted"
    assert the_mapping(db, "welcome").status == "voided"


def test_transient_failures_retry_with_backoff_and_429s_use_no_attempt(
    db: Database, runtime: Runtime, provider: MemoryProvider, retries: list[dict[str, Any]]
) -> None:
    # Given a loyalty visit whose update fails with a 503, then a 429, then succeeds
    scan_id = a_scan(db, "v1", "loyalty", amount=2.0)
    provider.fail_next["update"] = [
        TransientError("503", status=503),
        RateLimitedError("slow down", retry_after=3.0),
    ]
    # When the task and its retries run
    first = run_task(scan_id)
    assert isinstance(first, dict)
    second = run_task(scan_id, **first["kwargs"])
    assert isinstance(second, dict)
    third = run_task(scan_id, **second["kwargs"])
    # Then the 503 used an attempt, the 429 waited its Retry-After without one, then applied
    assert first["kwargs"] == {"attempt": 1, "waiting": False}
    assert 0 <= first["countdown"] <= 0.5
    assert second["kwargs"] == {"attempt": 1, "waiting": False}
    assert 3.0 <= second["countdown"] <= 4.0
    assert third == "accepted"
    assert provider.calls["update"] == 3
    assert provider.passes[str(the_mapping(db, "loyalty").provider_pass_id)].fields == {
        "tier": "WELCOME10",
        "visits": 1,
        "scanPoints": 1.0,
    }


def test_the_last_transient_attempt_leaves_the_scan_for_the_sweep(
    db: Database, runtime: Runtime, provider: MemoryProvider, retries: list[dict[str, Any]]
) -> None:
    scan_id = a_scan(db, "v1", "loyalty")
    provider.fail_next["update"] = [TransientError("503", status=503)]
    last = scan_tasks.MAX_SCAN_ATTEMPTS - 1
    assert run_task(scan_id, attempt=last) == "gave-up"
    assert retries == []


def test_a_refusal_is_final_and_not_retried(
    db: Database, runtime: Runtime, provider: MemoryProvider, retries: list[dict[str, Any]]
) -> None:
    scan_id = a_scan(db, "s1", "welcome")
    provider.fail_next["void"] = [RejectedError("pass is locked", status=409)]
    assert run_task(scan_id) == "refused"
    assert run_task(scan_id) == "duplicate"
    assert retries == []
    assert provider.calls["void"] == 1
