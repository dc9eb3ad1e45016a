"""An API wired to the test database, a recording scan publisher and an in-memory provider."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.api.conftest import SECRET, BrokerPing, RecordingEnqueue, signed_headers
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.providers.memory import MemoryProvider
from worker.scans.models import Scan
from worker.scans.usage import UsageContext, process_scan
from worker.sync.models import PassMapping, PassStatus

USAGE = {
    "rules": [
        {"pass_key": "welcome", "mode": "redeem", "push": "Thanks for visiting {location}!"},
        {
            "pass_key": "loyalty",
            "mode": "visit",
            "points_field": "scanPoints",
            "points_per_amount": 0.5,
        },
    ]
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(sources={"pos": {"secret": SECRET}}, usage=USAGE)


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def published() -> RecordingEnqueue:
    return RecordingEnqueue()


@pytest.fixture
def client(settings: Settings, db: Database, published: RecordingEnqueue) -> Iterator[TestClient]:
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing(), enqueue_scans=published)
    with TestClient(app) as test_client:
        yield test_client


def seed_pass(db: Database, provider: MemoryProvider, customer: str, key: str) -> str:
    """A live pass at the provider and its mapping; returns the provider pass id."""
    template = "tpl-welcome" if key == "welcome" else "tpl-loyalty"
    upid = f"passsync-{key}-{customer}"
    created = provider.create_pass(template_id=template, user_provided_id=upid, fields={})
    with db.session() as session:
        session.add(
            PassMapping(
                provider="passcreator",
                customer_id=customer,
                pass_key=key,
                user_provided_id=upid,
                provider_pass_id=created.pass_id,
                template_id=template,
                status=PassStatus.ACTIVE,
            )
        )
    provider.calls.clear()
    return created.pass_id


def scan(scan_id: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": scan_id, "scanned_at": "2026-11-20T10:00:00+00:00"}
    body.update(fields)
    return body


def post_scans(client: TestClient, body: dict[str, Any], source: str = "pos") -> Any:
    raw = json.dumps(body).encode()
    return client.post(f"/scans/{source}", content=raw, headers=signed_headers(raw))


def run_published(
    db: Database, settings: Settings, provider: MemoryProvider, published: RecordingEnqueue
) -> list[str]:
    """Run every published scan id as the worker task would; returns their statuses."""
    ctx = UsageContext(settings, provider)
    statuses = []
    for ids in published.calls:
        for scan_id in ids:
            with db.session() as session:
                statuses.append(str(process_scan(session, scan_id, ctx).status))
    published.calls.clear()
    return statuses


def scans(db: Database) -> list[Scan]:
    with db.session() as session:
        return list(session.scalars(select(Scan).order_by(Scan.id)))
