"""Acceptance: the shipped rules (config.yaml), from a signed webhook to the provider's state.

Each event goes through the real receiver (TestClient over create_app, real database); the
enqueued ledger ids are then applied by the engine against the in-memory provider.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.providers.memory import MemoryProvider, StoredPass
from worker.sync.engine import Outcome, SyncContext, process_event
from worker.sync.templates import TemplateResolver

from .conftest import BrokerPing, RecordingEnqueue, signed_headers

SHIPPED = yaml.safe_load((Path(__file__).resolve().parents[2] / "config.yaml").read_text())
TEMPLATES = {
    "tpl-loyalty": "Loyalty Card",
    "tpl-welcome": "Welcome Discount",
    "tpl-ticket": "Event Ticket",
}


class Shop:
    """A receiver with the shipped rules, and a worker applying what it enqueues."""

    def __init__(
        self, client: TestClient, enqueue: RecordingEnqueue, db: Database, ctx: SyncContext
    ) -> None:
        self.client, self.enqueue, self.db, self.ctx = client, enqueue, db, ctx
        self.provider: MemoryProvider = ctx.provider  # type: ignore[assignment]
        self._ids = count(1)
        self._minute = count(0)

    def send(
        self, kind: str, data: dict[str, Any] | None = None, **attributes: Any
    ) -> list[tuple[str, str, Outcome]]:
        """POST one signed event for customer c-7, then apply it; the outcomes per action."""
        n = next(self._ids)
        body = json.dumps(
            {
                "id": f"evt-{n}",
                "type": kind,
                "occurred_at": f"2026-11-01T10:{next(self._minute):02d}:00Z",
                "customer": {"id": "c-7", "first_name": "Ada", "attributes": attributes},
                "data": data or {},
            }
        ).encode()
        answer = self.client.post(
            "/webhooks/crm", content=body, headers=signed_headers(body, msg_id=f"m{n}")
        )
        assert answer.json() == {"accepted": 1, "duplicates": 0}
        [ledger_id] = self._enqueued()
        with self.db.session() as session:
            result = process_event(session, ledger_id, self.ctx)
        return [(p.pass_key, p.action, p.outcome) for p in result.passes]

    def _enqueued(self) -> list[int]:
        # The receiver publishes after its commit, which may end just after the answer.
        for _ in range(500):
            if self.enqueue.calls:
                return self.enqueue.calls.pop()
            time.sleep(0.01)
        raise AssertionError("the receiver enqueued nothing")

    def passes(self, template: str) -> list[StoredPass]:
        return [
            p for p in self.provider.live() if self.provider.templates[p.template_id] == template
        ]


@pytest.fixture
def shop(
    settings_factory: Callable[..., Settings],
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> Iterator[Shop]:
    settings = settings_factory(database_url=db.url, sync=SHIPPED["sync"])
    provider = MemoryProvider(templates=dict(TEMPLATES))
    ctx = SyncContext(settings, provider, TemplateResolver(provider))
    with TestClient(create_app(settings, db, enqueue, broker)) as client:
        yield Shop(client, enqueue, db, ctx)


def test_a_first_time_buyer_gets_the_welcome_coupon_only(shop: Shop) -> None:
    outcomes = shop.send("order.completed", {"coupon_code": "HELLO5"}, orders_count=1)
    assert outcomes == [("welcome", "upsert", Outcome.CREATED)]
    [coupon] = shop.passes("Welcome Discount")
    assert coupon.fields == {"firstName": "Ada", "couponCode": "HELLO5"}
    assert coupon.user_provided_id == "passsync-welcome-c-7"
    assert shop.passes("Loyalty Card") == []


def test_a_repeat_customer_gets_the_loyalty_card_not_a_coupon(shop: Shop) -> None:
    outcomes = shop.send("order.completed", orders_count=2, tier="silver", points=40)
    assert outcomes == [("loyalty", "upsert", Outcome.CREATED)]
    [card] = shop.passes("Loyalty Card")
    assert card.fields == {"firstName": "Ada", "tier": "silver", "points": 40}
    assert shop.passes("Welcome Discount") == []


def test_tier_and_points_changes_update_the_card(shop: Shop) -> None:
    shop.send("customer.created", tier="silver", points=40)
    # A tier change updates the card and pushes a message
    assert shop.send("loyalty.tier_changed", tier="gold", points=40) == [
        ("loyalty", "upsert", Outcome.UPDATED),
        ("loyalty", "push", Outcome.PUSHED),
    ]
    [card] = shop.passes("Loyalty Card")
    assert shop.provider.pushes == [(card.pass_id, "Congratulations Ada, you are now gold!")]
    # A points change updates it quietly
    assert shop.send("loyalty.points_changed", tier="gold", points=90) == [
        ("loyalty", "upsert", Outcome.UPDATED)
    ]
    assert card.fields == {"firstName": "Ada", "tier": "gold", "points": 90}
    assert len(shop.provider.pushes) == 1 and shop.provider.calls["create"] == 1


def test_an_expired_membership_voids_the_card_and_a_renewal_restores_it(shop: Shop) -> None:
    shop.send("customer.created", tier="gold")
    assert shop.send("membership.expired") == [("loyalty", "void", Outcome.VOIDED)]
    [card] = shop.passes("Loyalty Card")
    assert card.voided is True
    assert shop.send("membership.renewed") == [("loyalty", "unvoid", Outcome.UNVOIDED)]
    assert card.voided is False


def test_a_cancelled_ticket_deletes_the_pass(shop: Shop) -> None:
    assert shop.send("ticket.purchased", {"event_name": "Gala"}) == [
        ("ticket", "upsert", Outcome.CREATED)
    ]
    [ticket] = shop.passes("Event Ticket")
    assert ticket.fields == {"firstName": "Ada", "event": "Gala", "seat": "free seating"}
    assert shop.send("ticket.cancelled") == [("ticket", "delete", Outcome.DELETED)]
    assert shop.passes("Event Ticket") == []
    assert shop.passes("Loyalty Card") == []


def test_an_event_no_rule_matches_changes_nothing(shop: Shop) -> None:
    assert shop.send("order.completed", orders_count=0) == []
    assert shop.provider.live() == [] and sum(shop.provider.calls.values()) == 0
