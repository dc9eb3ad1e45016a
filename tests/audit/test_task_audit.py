"""Acceptance: the event task writes exactly one audit row per HTTP attempt, retries included,
attributed to the event, with no secret anywhere in the table (respx stands in for Passcreator).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
import respx
from sqlalchemy import select

from tests.audit.helpers import assert_no_secret_in_any_column, audit_rows
from tests.sync.ledger_rows import store
from worker.audit import AuditEntry
from worker.db import Database
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.sync.models import PassMapping
from worker.tasks.jobs import process_event
from worker.tasks.runtime import get_runtime, reset_runtime

BASE = "https://passcreator.audit.test"
API_KEY = "pc-audit-key-5d1c0b7e"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"audit-webhook-secret-32-bytes!!!").decode()
ADMIN_SECRET = "admin-audit-secret-8e2f"
SECRETS = (API_KEY, WEBHOOK_SECRET, ADMIN_SECRET)
TEMPLATES = [{"identifier": "tpl-loyalty", "name": "Loyalty Card"}]
CREATED = {"success": True, "errors": [], "data": {"identifier": "pass-77"}, "statusCode": 200}
SERVER_ERROR = {"success": False, "errors": ["try again"], "statusCode": 503}


@pytest.fixture
def worker_env(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A task runtime built by get_runtime() from the environment, as in a worker process."""
    env = {
        "PASSSYNC_DATABASE_URL": db.url,
        "PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL": BASE,
        "PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY": API_KEY,
        "PASSSYNC_PROVIDERS__PASSCREATOR__MAX_ATTEMPTS": "3",
        "PASSSYNC_PROVIDERS__PASSCREATOR__BACKOFF_SECONDS": "0",
        "PASSSYNC_SOURCES__CRM__SECRET": WEBHOOK_SECRET,
        "PASSSYNC_ADMIN_TOKENS__OPS__SECRET": ADMIN_SECRET,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_runtime()
    yield
    get_runtime().sync.provider.close()  # type: ignore[attr-defined]
    get_runtime().db.dispose()
    reset_runtime()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("/api/pass-template").mock(return_value=httpx.Response(200, json=TEMPLATES))
        yield router


def a_stored_event(db: Database) -> int:
    event = CanonicalEvent.model_validate(
        {
            "id": "evt-audit-1",
            "type": "customer.created",
            "occurred_at": "2026-11-20T10:00:00Z",
            "customer": {"id": "c-audit", "first_name": "Ada", "attributes": {"tier": "gold"}},
        }
    )
    return store(db, event)


def shape(rows: list[AuditEntry]) -> list[tuple[object, ...]]:
    # pass_ref is left out: which calls carry one is the client's business, tested there.
    return [
        (r.action, r.method, r.path, r.status, r.attempt, r.outcome, r.actor_kind, r.actor_id)
        for r in rows
    ]


def test_one_row_per_attempt_including_retries_all_for_the_event(
    db: Database, worker_env: None, api: respx.MockRouter
) -> None:
    # Given Passcreator answers the create 503, 503, then 200
    create = api.post("/api/v3/pass").mock(
        side_effect=[
            httpx.Response(503, json=SERVER_ERROR),
            httpx.Response(503, json=SERVER_ERROR),
            httpx.Response(200, json=CREATED),
        ]
    )
    event_id = a_stored_event(db)
    # When the worker task processes the event
    outcome = process_event(event_id)
    # Then 4 HTTP attempts were made and exactly 4 rows describe them, in order
    assert outcome == "loyalty:created"
    assert len(api.calls) == 4 and create.call_count == 3
    ev = str(event_id)
    assert shape(audit_rows(db)) == [
        ("list_templates", "GET", "/api/pass-template", 200, 1, "ok", "event", ev),
        ("create_pass", "POST", "/api/v3/pass", 503, 1, "server_error", "event", ev),
        ("create_pass", "POST", "/api/v3/pass", 503, 2, "server_error", "event", ev),
        ("create_pass", "POST", "/api/v3/pass", 200, 3, "ok", "event", ev),
    ]
    assert all(r.provider == "passcreator" and r.duration_ms >= 0 for r in audit_rows(db))
    assert_no_secret_in_any_column(db, SECRETS)


def test_a_failed_event_rolls_back_its_work_but_keeps_its_audit_rows(
    db: Database, worker_env: None, api: respx.MockRouter
) -> None:
    # Given Passcreator rejects the create
    rejected = {"success": False, "errors": [{"property": "templateId", "message": "invalid"}]}
    api.post("/api/v3/pass").mock(return_value=httpx.Response(400, json=rejected))
    event_id = a_stored_event(db)
    # When the task processes the event
    outcome = process_event(event_id)
    # Then the event failed and no mapping was stored ...
    assert outcome == "dead"
    with db.sessions() as session:
        # (the claimed mapping row records no pass)
        assert [m.provider_pass_id for m in session.scalars(select(PassMapping))] == [None]
        assert session.get(InboundEvent, event_id).status == EventStatus.DEAD  # type: ignore[union-attr]
    # ... yet both attempts are on record for that event
    ev = str(event_id)
    assert shape(audit_rows(db)) == [
        ("list_templates", "GET", "/api/pass-template", 200, 1, "ok", "event", ev),
        ("create_pass", "POST", "/api/v3/pass", 400, 1, "rejected", "event", ev),
    ]
    assert_no_secret_in_any_column(db, SECRETS)


def test_an_event_with_no_provider_call_writes_no_row(
    db: Database, worker_env: None, api: respx.MockRouter
) -> None:
    # Given an event no rule applies to
    event = CanonicalEvent.model_validate(
        {
            "id": "evt-audit-2",
            "type": "order.completed",
            "occurred_at": "2026-11-20T10:00:00Z",
            "customer": {"id": "c-audit"},
        }
    )
    event_id = store(db, event)
    # When it is processed, Then no call is made and no row written
    assert process_event(event_id) == "no-rule"
    assert (len(api.calls), audit_rows(db)) == (0, [])
