"""An outbound destination on a real port, the engine on the in-memory provider, a clock."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import SECRET as INBOUND_SECRET
from tests.api.conftest import WRITE_TOKEN, BrokerPing, RecordingEnqueue, signed_headers
from tests.outbox.receiver import Receiver
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.outbox.deliver import RunResult, deliver_due
from worker.outbox.transport import HttpTransport
from worker.providers.memory import MemoryProvider
from worker.sync.engine import SyncContext, process_event
from worker.sync.templates import TemplateResolver

OUT_SECRET = "whsec_" + base64.b64encode(b"outbound-secret-for-tests-32-byt").decode()
READ_TOKEN = "read-token-0123456789"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Clock:
    """The delivery run's notion of now; tests move it instead of waiting."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(OUT_SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def settings_for(
    make_settings: Callable[..., Settings], db: Database, receiver: Receiver
) -> Callable[..., Settings]:
    def build(**outbound: Any) -> Settings:
        destinations = outbound.pop(
            "destinations", {"crm": {"url": receiver.url, "secret": OUT_SECRET}}
        )
        return make_settings(
            database_url=db.url,
            sources={"crm": {"secret": INBOUND_SECRET}},
            admin_tokens={
                "viewer": {"scopes": ["read"], "secret": READ_TOKEN},
                "operator": {"scopes": ["read", "write"], "secret": WRITE_TOKEN},
            },
            outbound={
                "destinations": destinations,
                "retry_schedule_seconds": [5, 60, 600],
                "timeout_seconds": 1.0,
                "connect_timeout_seconds": 1.0,
                "lease_seconds": 30,
                "parallel": 4,
            }
            | outbound,
        )

    return build


@pytest.fixture
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for()


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def clock() -> Clock:
    return Clock()


class System:
    """The receiver app, the engine (as a worker runs it) and the delivery run."""

    def __init__(
        self, settings: Settings, db: Database, provider: MemoryProvider, clock: Clock
    ) -> None:
        self.settings, self.db, self.provider, self.clock = settings, db, provider, clock
        self.enqueue = RecordingEnqueue()
        self.ctx = SyncContext(settings, provider, TemplateResolver(provider))
        self.transport = HttpTransport(settings.outbound)
        self.rng = random.Random(7)
        self.client = TestClient(create_app(settings, db, self.enqueue, BrokerPing()))
        self.client.__enter__()
        self._applied = 0
        self._publishes = 0

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.transport.close()

    def post_event(self, event: dict[str, Any], msg_id: str = "msg_1") -> dict[str, Any]:
        """A signed CRM webhook through the real receiver; answers its JSON (202)."""
        body = json.dumps(event).encode()
        headers = signed_headers(body, msg_id=msg_id)
        response = self.client.post("/webhooks/crm", content=body, headers=headers)
        assert response.status_code == 202, response.text
        answer = dict(response.json())
        self._publishes += 1 if answer["accepted"] else 0
        return answer

    def work(self) -> None:
        """Apply every ledger id the receiver published, as the worker's task would."""
        calls = self.enqueue.wait_for(self._publishes)
        ids = [i for call in calls for i in call][self._applied :]
        for event_id in ids:
            with self.db.session() as session:
                process_event(session, event_id, self.ctx)
        self._applied += len(ids)

    def deliver(self) -> RunResult:
        return deliver_due(
            self.db, self.settings.outbound, self.transport, now=self.clock, rng=self.rng
        )

    def api(self, method: str, path: str, token: str = READ_TOKEN) -> Any:
        return self.client.request(method, path, headers={"authorization": f"Bearer {token}"})


@pytest.fixture
def system(
    settings: Settings, db: Database, provider: MemoryProvider, clock: Clock
) -> Iterator[System]:
    built = System(settings, db, provider, clock)
    yield built
    built.close()


def customer_event(
    event_id: str, customer: str = "cust-1", *, minutes: int = 0, tier: str = "gold", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id,
        "type": "customer.created",
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "customer": {"id": customer, "first_name": "Ada", "attributes": {"tier": tier}},
        "data": {},
    }
    body.update(extra)
    return body
