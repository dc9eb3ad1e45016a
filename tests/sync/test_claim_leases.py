"""Claims are leases: renewed while the attempt lives, lapsing soon after it dies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.sync.ledger_rows import store
from tests.sync.test_claims_and_coalescing import make_event, rules, the_mapping
from worker.config import Settings
from worker.db import Database, utcnow
from worker.inbound.models import EventStatus, InboundEvent
from worker.providers.memory import MemoryProvider
from worker.providers.port import ProviderPass
from worker.sync.engine import (
    ClaimLostError,
    Outcome,
    PassBusyError,
    SyncContext,
    process_event,
)
from worker.sync.lease import heartbeat_seconds
from worker.sync.models import PassMapping
from worker.sync.templates import TemplateResolver

LEASE = 1.0  # seconds; the renewal runs every third of it


class SlowCreates(MemoryProvider):
    """Creates that take `delay` seconds, as a slow provider answer would."""

    delay: float = 0.0
    started: threading.Event

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()

    def create_pass(self, **kwargs: Any) -> ProviderPass:
        self.started.set()
        time.sleep(self.delay)
        return super().create_pass(**kwargs)


@pytest.fixture
def slow() -> SlowCreates:
    return SlowCreates()


@pytest.fixture
def ctx(make_settings: Callable[..., Settings], slow: SlowCreates) -> SyncContext:
    sync = {"rules": rules(), "coalesce_window_ms": 0, "claim_seconds": LEASE}
    return SyncContext(make_settings(sync=sync), slow, TemplateResolver(slow))


def run(db: Database, row_id: int, ctx: SyncContext) -> Any:
    with db.session() as session:
        return process_event(session, row_id, ctx)


def test_the_default_lease_is_short_and_renewed_three_times_per_lease(
    make_settings: Callable[..., Settings],
) -> None:
    # A killed worker's passes are free again within seconds, not minutes.
    claim = make_settings().sync.claim_seconds
    assert claim == 10.0
    assert heartbeat_seconds(claim) == pytest.approx(10.0 / 3)


def test_a_living_attempt_longer_than_the_lease_keeps_its_pass(
    db: Database, ctx: SyncContext, slow: SlowCreates
) -> None:
    # Given an attempt whose provider call takes three leases
    slow.delay = 3 * LEASE
    first = store(db, make_event("e1", minutes=1, tier="silver"))
    second = store(db, make_event("e2", minutes=2, tier="gold"))
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(run(db, first, ctx)))
    worker.start()
    assert slow.started.wait(5)
    # When another attempt tries the same pass after the first lease would have run out
    time.sleep(2 * LEASE)
    with pytest.raises(PassBusyError) as busy:
        run(db, second, ctx)
    worker.join()
    # Then it waited (the renewal kept the claim), and the first attempt recorded its create
    assert 0 < busy.value.retry_after <= LEASE
    assert [p.outcome for p in outcome[0].passes] == [Outcome.CREATED]
    assert slow.calls["create"] == 1
    # And afterwards the waiting event goes through as an update of that one pass
    slow.delay = 0
    assert [p.outcome for p in run(db, second, ctx).passes] == [Outcome.UPDATED]
    assert len(slow.live()) == 1
    assert the_mapping(db).claim_token is None


def test_a_dead_attempts_claim_lapses_within_the_lease(
    db: Database, ctx: SyncContext, slow: SlowCreates
) -> None:
    # Given a pass claimed by an attempt that died right after taking it (no renewals)
    row_id = store(db, make_event("e1"))
    with db.session() as session:
        session.add(
            PassMapping(
                provider="passcreator",
                customer_id="c1",
                pass_key="loyalty",
                user_provided_id="passsync-loyalty-c1",
                claim_token="dead-attempt",
                claim_expires_at=utcnow() + timedelta(seconds=LEASE),
                unconfirmed_since=utcnow(),
            )
        )
    # When an attempt comes at once, it waits at most the lease
    with pytest.raises(PassBusyError) as busy:
        run(db, row_id, ctx)
    assert 0 < busy.value.retry_after <= LEASE
    assert slow.calls["create"] == 0
    # Then once the lease has run out it takes the pass over
    time.sleep(busy.value.retry_after + 0.05)
    assert [p.outcome for p in run(db, row_id, ctx).passes] == [Outcome.CREATED]


def test_an_attempt_whose_claim_was_taken_calls_nothing_more_and_records_nothing(
    db: Database,
    make_settings: Callable[..., Settings],
    slow: SlowCreates,
) -> None:
    # Given an event with two passes, and a provider whose first create is slow
    sync = {"rules": rules(), "coalesce_window_ms": 0, "claim_seconds": LEASE}
    ctx = SyncContext(make_settings(sync=sync), slow, TemplateResolver(slow))
    row_id = store(db, make_event("e1", type="customer.created", data={"code": "X"}))
    slow.delay = LEASE
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            run(db, row_id, ctx)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=attempt)
    worker.start()
    assert slow.started.wait(5)
    # When another attempt takes one of its claims meanwhile (as after a lapsed lease)
    with db.session() as session:
        session.execute(update(PassMapping).values(claim_token="other-attempt"))
    worker.join()
    # Then the first attempt stopped before its next call and recorded nothing
    assert len(errors) == 1 and isinstance(errors[0], ClaimLostError)
    assert slow.calls["create"] == 1
    with db.sessions() as session:
        status = session.scalar(select(InboundEvent.status).where(InboundEvent.id == row_id))
        tokens = set(session.scalars(select(PassMapping.claim_token)))
    assert status == EventStatus.PENDING
    assert tokens == {"other-attempt"}
