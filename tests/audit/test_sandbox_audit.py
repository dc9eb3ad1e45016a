"""Acceptance against the sandbox: injected faults force retries, and the audit log holds
exactly as many rows as the sandbox counted requests, per method, with no secret in them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from tests.audit.helpers import assert_no_secret_in_any_column, audit_rows
from tests.sync.ledger_rows import store
from worker.db import Database
from worker.inbound.schema import CanonicalEvent
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import SandboxSettings
from worker.tasks.jobs import process_event
from worker.tasks.runtime import get_runtime, reset_runtime

KEY = "audit-sandbox-key-31f9"
EVENTS = 6
MAX_DELIVERIES = 10


@pytest.fixture(scope="module")
def _sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(SandboxSettings(port=0, api_key=SecretStr(KEY))) as handle:
        yield handle


@pytest.fixture
def sandbox(
    _sandbox: SandboxHandle, db: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SandboxHandle]:
    _sandbox.reset()
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL", _sandbox.base_url)
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY", KEY)
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__BACKOFF_SECONDS", "0")
    monkeypatch.setenv("PASSSYNC_SYNC__COALESCE_WINDOW_MS", "0")  # one call per event here
    reset_runtime()
    yield _sandbox
    get_runtime().sync.provider.close()  # type: ignore[attr-defined]
    get_runtime().db.dispose()
    reset_runtime()


def deliver(event_id: int) -> str:
    """Call the task as the broker would redeliver it until it stops asking for a retry."""
    for _ in range(MAX_DELIVERIES):
        try:
            return str(process_event(event_id))
        except Exception:  # noqa: S112 - called directly, a retry re-raises; deliver again
            continue
    raise AssertionError(f"event {event_id} still retrying after {MAX_DELIVERIES} deliveries")


def test_rows_match_the_requests_the_sandbox_received(db: Database, sandbox: SandboxHandle) -> None:
    # Given a sandbox that answers 40 % of requests with an injected 503
    sandbox.configure(error_503_probability=0.4, seed=11)
    ids = [
        store(
            db,
            CanonicalEvent.model_validate(
                {
                    "id": f"e{i}",
                    "type": "customer.updated",
                    "occurred_at": f"2026-11-20T10:0{i}:00Z",
                    "customer": {"id": f"c{i % 3}", "attributes": {"tier": f"t{i}"}},
                }
            ),
        )
        for i in range(EVENTS)
    ]
    # When every event is processed to the end
    outcomes = [deliver(event_id) for event_id in ids]
    # Then faults did force retries, and rows match the sandbox's own request count per method
    stats = sandbox.stats()
    rows = audit_rows(db)
    received = Counter[str]()
    for endpoint, count in stats["calls"].items():
        received[endpoint.split(" ", 1)[0]] += count
    assert all(o.startswith("loyalty:") for o in outcomes)
    assert stats["faults"]["503"] > 0 and any(r.attempt > 1 for r in rows)
    assert Counter(r.method for r in rows) == received
    assert len(rows) == sum(stats["calls"].values())
    assert sum(r.status == 503 for r in rows) == stats["faults"]["503"]
    assert {r.actor_id for r in rows} <= {str(i) for i in ids}
    assert {r.actor_kind for r in rows} == {"event"}
    assert_no_secret_in_any_column(db, (KEY,))
