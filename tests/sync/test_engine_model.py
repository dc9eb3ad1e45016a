"""A model-based test: the engine against a simple model of the provider (Hypothesis).

A state machine emits customer events into the ledger and delivers them in any order, again,
with transient failures (before or after the provider applied the call), with answers lost
until a later retry, and with passes deleted at the provider behind our back. After every
step the provider must show, per customer, the fields of the newest event applied, and never
two passes for one customer. With coalescing on, delivering an event also applies its
customer's newer unfinished events (they are handled with it).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from tests.sync.ledger_rows import store
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.providers.errors import TransientError
from worker.providers.memory import MemoryProvider
from worker.sync.engine import SyncContext, process_event
from worker.sync.templates import TemplateResolver

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
CUSTOMERS = 2
TIERS = ("bronze", "gold")
POINTS = (0, 10)  # few values, so a snapshot often repeats the previous one (a no-op)
Key = tuple[datetime, str]


@dataclass(frozen=True)
class Emitted:
    """One event the machine put into the ledger."""

    row_id: int
    event_id: str
    customer: int
    occurred_at: datetime
    fields: dict[str, Any]

    @property
    def key(self) -> Key:
        return (self.occurred_at, self.event_id)


@dataclass
class Expected:
    """What the provider must show for one customer.

    `state` is "present" (exactly one pass with `fields`), "absent" (none: deleted behind our
    back and not rewritten since) or "maybe": deleted behind our back, and the newer events
    since carried the same fields, so the engine may rightly make no call (it cannot know)
    or write anyway (an earlier answer was lost): no pass, or one with `fields`.
    """

    last: Key | None = None
    fields: dict[str, Any] | None = None
    state: str = "absent"


class EngineModel(RuleBasedStateMachine):
    """Set `db` and `base_settings` on the class before running it."""

    db: Database
    base_settings: Settings

    def __init__(self) -> None:
        super().__init__()
        self.prefix = uuid.uuid4().hex[:8]  # examples share the database, not customers
        self.provider = MemoryProvider()
        self.ctx = SyncContext(self.base_settings, self.provider, TemplateResolver(self.provider))
        self.clock = T0
        self.events: list[Emitted] = []
        self.handled: set[int] = set()
        self.lost: set[int] = set()  # applied at the provider, answer lost, not yet retried
        self.expected = [Expected() for _ in range(CUSTOMERS)]

    # --- helpers ------------------------------------------------------------------------------

    def customer_id(self, k: int) -> str:
        return f"{self.prefix}-c{k}"

    def upid(self, k: int) -> str:
        return f"passsync-loyalty-{self.customer_id(k)}"

    def pending(self) -> list[Emitted]:
        return [e for e in self.events if e.row_id not in self.handled]

    def process(self, event: Emitted) -> None:
        with self.db.session() as session:
            process_event(session, event.row_id, self.ctx)

    def applied(self, event: Emitted) -> None:
        """The model of a successful delivery of `event` (the engine marked it handled)."""
        group = [event]
        if self.ctx.settings.sync.coalesce_window_ms > 0:
            group += [
                e
                for e in self.pending()
                if e.customer == event.customer and e.key > event.key and e is not event
            ]
        expected = self.expected[event.customer]
        fresh = [e for e in group if expected.last is None or e.key > expected.last]
        self.handled |= {event.row_id} | {e.row_id for e in fresh}
        self.lost -= self.handled
        if not fresh:
            return
        newest = max(fresh, key=lambda e: e.key)
        if newest.fields != expected.fields:
            expected.state = "present"  # a call the engine cannot skip
        elif expected.state != "present":
            expected.state = "maybe"
        expected.last, expected.fields = newest.key, newest.fields

    def pass_of(self, k: int) -> list[Any]:
        return [p for p in self.provider.live() if p.user_provided_id == self.upid(k)]

    # --- rules --------------------------------------------------------------------------------

    @initialize()
    def templates_listed(self) -> None:
        # The engine lists the templates once; counting calls from here on keeps them exact.
        self.ctx.templates.resolve("Loyalty Card")

    @rule(
        k=st.integers(0, CUSTOMERS - 1),
        tier=st.sampled_from(TIERS),
        points=st.sampled_from(POINTS),
        step=st.sampled_from([0, 1, 1, 5]),  # 0: the same instant, ordered by event id
    )
    def emit(self, k: int, tier: str, points: int, step: int) -> None:
        self.clock += timedelta(minutes=step)
        fields = {"firstName": "Ada", "tier": tier, "points": points}
        event_id = f"{self.prefix}-e{len(self.events):03d}"
        canonical = CanonicalEvent.model_validate(
            {
                "id": event_id,
                "type": "customer.created" if not self.events else "customer.updated",
                "occurred_at": self.clock.isoformat(),
                "customer": {
                    "id": self.customer_id(k),
                    "first_name": "Ada",
                    "attributes": {"tier": tier, "points": points},
                },
            }
        )
        row_id = store(self.db, canonical)
        self.events.append(Emitted(row_id, event_id, k, self.clock, fields))

    @precondition(lambda self: bool(self.pending()))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """Any pending event, not only the oldest: out-of-order delivery."""
        event = data.draw(st.sampled_from(self.pending()))
        self.process(event)
        self.applied(event)

    @precondition(lambda self: bool(self.handled))
    @rule(data=st.data())
    def deliver_again(self, data: st.DataObject) -> None:
        event = data.draw(st.sampled_from([e for e in self.events if e.row_id in self.handled]))
        calls = dict(self.provider.calls)
        self.process(event)
        assert dict(self.provider.calls) == calls

    @precondition(lambda self: bool(self.pending()))
    @rule(
        data=st.data(),
        call=st.sampled_from(["create", "update", "get"]),
        applied_first=st.booleans(),
    )
    def fail_then_retry(self, data: st.DataObject, call: str, applied_first: bool) -> None:
        """A transient error on one call, before it took effect or after it (the answer
        lost), and the delivery tried again at once."""
        event = data.draw(st.sampled_from(self.pending()))
        queue = self.provider.fail_after_next if applied_first else self.provider.fail_next
        queue[call] = [TransientError(f"injected on {call}", status=503)]
        with contextlib.suppress(TransientError):
            self.process(event)  # no error when the engine makes no such call
        self.provider.fail_next.clear()
        self.provider.fail_after_next.clear()
        self.process(event)
        self.applied(event)

    @precondition(lambda self: bool(self.pending()))
    @rule(data=st.data())
    def lose_answer(self, data: st.DataObject) -> None:
        """The provider applies the event's first write but the answer never comes back (a
        crash, a timeout); the event stays pending until a later delivery."""
        event = data.draw(st.sampled_from(self.pending()))
        for call in ("create", "update"):
            self.provider.fail_after_next[call] = [TransientError("answer lost", status=504)]
        try:
            self.process(event)
        except TransientError:
            self.lost.add(event.row_id)
        else:
            self.applied(event)  # nothing to write: a plain delivery
        finally:
            self.provider.fail_after_next.clear()

    def deletable(self) -> list[int]:
        return [k for k, e in enumerate(self.expected) if e.state != "absent"]

    @precondition(lambda self: bool(self.deletable()))
    @rule(data=st.data())
    def delete_behind_our_back(self, data: st.DataObject) -> None:
        k = data.draw(st.sampled_from(self.deletable()))
        for stored in self.pass_of(k):
            self.provider.delete_externally(stored.pass_id)
        self.expected[k].state = "absent"

    # --- what must always hold ----------------------------------------------------------------

    @invariant()
    def never_two_passes_for_one_customer(self) -> None:
        for k in range(CUSTOMERS):
            assert len(self.pass_of(k)) <= 1

    @invariant()
    def provider_matches_model(self) -> None:
        if self.lost:
            return  # the provider is ahead of the model until the lost answers are retried
        for k, expected in enumerate(self.expected):
            shown = [p.fields for p in self.pass_of(k)]
            if expected.state == "present":
                assert shown == [expected.fields], (k, expected)
            elif expected.state == "absent":
                assert shown == [], (k, expected)
            else:
                assert shown in ([], [expected.fields]), (k, expected)

    @invariant()
    def ledger_matches_model(self) -> None:
        ids = [e.row_id for e in self.events]
        with self.db.sessions() as session:
            rows = session.execute(
                select(InboundEvent.id, InboundEvent.status).where(InboundEvent.id.in_(ids))
            ).all()
        assert dict(rows) == {i: "handled" if i in self.handled else "pending" for i in ids}

    def teardown(self) -> None:
        """Deliver whatever is left (lost answers included): the model must hold at the end."""
        while self.pending():
            event = self.pending()[0]
            self.process(event)
            self.applied(event)
        assert self.lost == set()
        self.provider_matches_model()


@pytest.mark.parametrize("coalesce", [False, True], ids=["one-by-one", "coalescing"])
def test_engine_matches_a_model_of_the_provider(
    db: Database, make_settings: Callable[..., Settings], coalesce: bool
) -> None:
    EngineModel.db = db
    EngineModel.base_settings = make_settings(sync={"coalesce_window_ms": 500 if coalesce else 0})
    run_state_machine_as_test(
        EngineModel,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
