"""A commit group claimed, called and recorded together: set-based, and still exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from tests.sync.ledger_rows import store
from tests.sync.test_engine import T0
from worker.config import Settings
from worker.db import Database, utcnow
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.outbox.models import OutboxEvent
from worker.providers.errors import TransientError
from worker.providers.memory import MemoryProvider
from worker.providers.port import ProviderPass
from worker.sync.engine import ClaimLostError, Outcome, SyncContext
from worker.sync.group import GroupResult, HandedOn, HandOn, process_group
from worker.sync.models import PassMapping
from worker.sync.templates import TemplateResolver

LOYALTY = {"firstName": "customer.first_name", "tier": "customer.attributes.tier"}
WELCOME = {"code": "data.code"}
RULES = [
    {
        "name": "card",
        "on": ["customer.updated"],
        "actions": [{"upsert": "loyalty", "template": "Loyalty Card", "fields": LOYALTY}],
    },
    {
        "name": "both",
        "on": ["customer.created"],
        "actions": [
            {"upsert": "loyalty", "template": "Loyalty Card", "fields": LOYALTY},
            {"upsert": "welcome", "template": "Welcome Discount", "fields": WELCOME},
        ],
    },
]


def make_event(
    event_id: str, customer: str, *, minutes: int = 0, tier: str = "gold", type: str = ""
) -> CanonicalEvent:
    return CanonicalEvent.model_validate(
        {
            "id": event_id,
            "type": type or "customer.updated",
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "customer": {"id": customer, "first_name": "Ada", "attributes": {"tier": tier}},
            "data": {"code": "W1"},
        }
    )


class HookedProvider(MemoryProvider):
    """The memory provider, running `before_create[user_provided_id]` before that create."""

    def __init__(self) -> None:
        super().__init__()
        self.before_create: dict[str, Callable[[], None]] = {}

    def create_pass(
        self, *, template_id: str, user_provided_id: str, fields: dict[str, Any]
    ) -> ProviderPass:
        hook = self.before_create.pop(user_provided_id, None)
        if hook is not None:
            hook()
        return super().create_pass(
            template_id=template_id, user_provided_id=user_provided_id, fields=fields
        )


@pytest.fixture
def provider() -> HookedProvider:
    return HookedProvider()


@pytest.fixture
def build(
    make_settings: Callable[..., Settings], provider: HookedProvider
) -> Callable[..., SyncContext]:
    def make(window_ms: int = 0) -> SyncContext:
        sync = {"rules": RULES, "coalesce_window_ms": window_ms}
        return SyncContext(make_settings(sync=sync), provider, TemplateResolver(provider))

    return make


def apply(db: Database, ids: list[int], ctx: SyncContext, **options: Any) -> GroupResult:
    with db.session() as session:
        return process_group(session, ids, ctx, **options)


def ledger(db: Database) -> dict[str, tuple[str, int, int | None]]:
    with db.sessions() as session:
        rows = session.scalars(select(InboundEvent).order_by(InboundEvent.id)).all()
    return {r.event_id: (r.status, r.attempts, r.coalesced_into) for r in rows}


def mappings(db: Database) -> dict[tuple[str, str], PassMapping]:
    with db.sessions() as session:
        rows = session.scalars(select(PassMapping)).all()
    return {(r.customer_id, r.pass_key): r for r in rows}


@contextmanager
def counting(db: Database) -> Iterator[Counter[str]]:
    """Counts the SQL statements (by verb) and commits the database sees in the block."""
    seen: Counter[str] = Counter()

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen[sql.split(maxsplit=1)[0].upper()] += 1

    def commit(conn: Any) -> None:
        seen["COMMIT"] += 1

    event.listen(db.engine, "before_cursor_execute", statement)
    event.listen(db.engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", statement)
        event.remove(db.engine, "commit", commit)


def test_a_group_costs_the_same_few_statements_whatever_its_size(
    db: Database, build: Callable[..., SyncContext], provider: HookedProvider
) -> None:
    # Given 10, then 40 new customers' events (one pass each), each applied as one group
    ctx = build(window_ms=1000)
    small = [store(db, make_event(f"s{n}", f"s{n}")) for n in range(10)]
    large = [store(db, make_event(f"l{n}", f"l{n}")) for n in range(40)]
    apply(db, small[:1], ctx)  # the template list, once
    # When each group is applied
    with counting(db) as for_small:
        assert len(apply(db, small[1:], ctx).applied) == 9
    with counting(db) as for_large:
        assert len(apply(db, large, ctx).applied) == 40
    # Then both cost the same statements (not one set per event): the claim (events locked,
    # riders read, mappings inserted and locked, claims taken) and the record (events and
    # mappings locked, mappings written, outbox rows, events handled), two commits
    if db.is_sqlite:  # SQLite's driver inserts the outbox rows one by one (no RETURNING batch)
        del for_small["INSERT"], for_large["INSERT"]
    assert for_small == for_large
    assert sum(n for verb, n in for_large.items() if verb != "COMMIT") <= 12
    assert for_large["COMMIT"] == 2
    assert provider.calls["create"] == 50
    assert {status for status, _, _ in ledger(db).values()} == {"handled"}
    with db.sessions() as session:
        issued = session.scalars(select(OutboxEvent.type)).all()
    assert issued == ["pass.issued"] * 50


def test_a_customers_burst_in_one_group_is_one_call(
    db: Database, build: Callable[..., SyncContext], provider: HookedProvider
) -> None:
    # Given two customers, c1 with three updates in the group (stored out of order)
    ctx = build(window_ms=1000)
    ids = [
        store(db, make_event("b", "c1", minutes=2, tier="silver")),
        store(db, make_event("a", "c1", minutes=1, tier="bronze")),
        store(db, make_event("z", "c2", minutes=1)),
        store(db, make_event("c", "c1", minutes=3, tier="platinum")),
    ]
    asked: list[list[str]] = []

    def pace(customers: list[str]) -> list[float]:  # leading edge, then the window's end
        asked.append(customers)
        return [0.0 if customers.index(c) == i else 1.0 for i, c in enumerate(customers)]

    # When the group is applied
    result = apply(db, ids, ctx, pace=pace)
    # Then c1's oldest event leads, the newer ones ride along (no task of their own), and
    # c1's pass carries its newest state: one create per customer
    assert asked == [["c1", "c2", "c1", "c1"]]  # in (occurred_at, event id) order
    assert result.handed_on == []
    assert sorted(result.applied) == [ids[1], ids[2]]
    assert result.applied[ids[1]].coalesced == [ids[0], ids[3]]
    assert provider.calls["create"] == 2
    assert ledger(db) == {
        "b": ("handled", 0, ids[1]),
        "a": ("handled", 1, None),
        "z": ("handled", 1, None),
        "c": ("handled", 0, ids[1]),
    }
    c1 = next(p for p in provider.live() if p.user_provided_id.endswith("-c1"))
    assert c1.fields["tier"] == "platinum"


def test_without_coalescing_a_customers_second_event_goes_on_alone(
    db: Database, build: Callable[..., SyncContext], provider: HookedProvider
) -> None:
    ctx = build(window_ms=0)
    ids = [store(db, make_event("a", "c1", minutes=1)), store(db, make_event("b", "c1", minutes=2))]
    result = apply(db, ids, ctx)
    assert sorted(result.applied) == [ids[0]]
    assert result.handed_on == [HandedOn(ids[1], HandOn.LATER)]
    assert ledger(db)["b"] == ("pending", 0, None)


def test_paced_missing_and_already_handled_events(
    db: Database, build: Callable[..., SyncContext], provider: HookedProvider
) -> None:
    # Given a group: c1 applied before, c2 to wait 0.7 s, c3 new, and an id not in the ledger
    ctx = build(window_ms=1000)
    first = store(db, make_event("a", "c1"))
    apply(db, [first], ctx)
    ids = [first, store(db, make_event("b", "c2")), store(db, make_event("c", "c3")), 999_999]
    asked: list[list[str]] = []

    def pace(customers: list[str]) -> list[float]:
        asked.append(customers)
        return [0.7 if c == "c2" else 0.0 for c in customers]

    # When it is applied
    result = apply(db, ids, ctx, pace=pace)
    # Then the pacer is asked once for the unfinished events, c1 is a duplicate, c3 applied
    assert asked == [["c2", "c3"]]
    assert result.applied[first].already_handled
    assert [p.outcome for p in result.applied[ids[2]].passes] == [Outcome.CREATED]
    assert result.handed_on == [
        HandedOn(999_999, HandOn.MISSING),
        HandedOn(ids[1], HandOn.PACED, 0.7),
    ]
    assert ledger(db)["b"] == ("pending", 0, None)
    assert provider.calls["create"] == 2


def test_an_event_whose_pass_another_attempt_holds_waits_and_the_rest_goes_ahead(
    db: Database, build: Callable[..., SyncContext], provider: HookedProvider
) -> None:
    ctx = build()
    held, free = store(db, make_event("a", "c1")), store(db, make_event("b", "c2"))
    apply(db, [held], ctx)
    store_id = store(db, make_event("a2", "c1", minutes=1, tier="silver"))
    with db.session() as session:  # another live attempt holds c1's pass for 5 s more
        session.execute(
            update(PassMapping)
            .where(PassMapping.customer_id == "c1")
            .values(claim_token="other", claim_expires_at=utcnow() + timedelta(seconds=5))
        )
    result = apply(db, [store_id, free], ctx)
    assert sorted(result.applied) == [free]
    [busy] = result.handed_on
    assert (busy.event_id, busy.reason) == (store_id, HandOn.BUSY)
    assert 4 < busy.wait <= 5
    assert mappings(db)[("c1", "loyalty")].claim_token == "other"  # untouched
    assert provider.calls["update"] == 0


def test_a_failed_event_records_the_passes_it_did_and_releases_every_claim(
    db: Database, build: Callable[..., SyncContext], provider: HookedProvider
) -> None:
    # Given a group: c1's creation makes two passes, the second one fails; c2 is fine
    ctx = build()
    ids = [
        store(db, make_event("a", "c1", type="customer.created")),
        store(db, make_event("b", "c2")),
    ]
    failure = TransientError("create_pass: server error (503)")
    provider.before_create["passsync-welcome-c1"] = lambda: (_ for _ in ()).throw(failure)
    # When the group is applied
    result = apply(db, ids, ctx)
    # Then c2 is handled; c1 goes on alone, its done pass recorded (and announced), the other
    # released but unconfirmed, and no attempt counted
    assert sorted(result.applied) == [ids[1]]
    assert result.handed_on == [HandedOn(ids[0], HandOn.FAILED, error=failure)]
    assert ledger(db) == {"a": ("pending", 0, None), "b": ("handled", 1, None)}
    rows = mappings(db)
    done, failed = rows[("c1", "loyalty")], rows[("c1", "welcome")]
    assert (done.status, done.claim_token, done.unconfirmed_since) == ("active", None, None)
    assert (failed.status, failed.claim_token) == ("new", None)
    assert failed.unconfirmed_since is not None
    with db.sessions() as session:
        customers = session.scalars(select(OutboxEvent.customer_id).order_by("id")).all()
    assert sorted(customers) == ["c1", "c2"]


def test_a_claim_taken_over_during_the_calls_is_never_recorded(
    db: Database, build: Callable[..., SyncContext], provider: HookedProvider
) -> None:
    # Given a group of two where, during c1's create, another attempt takes c1's pass over
    ctx = build()
    ids = [store(db, make_event("a", "c1")), store(db, make_event("b", "c2"))]

    def take_over() -> None:
        with db.session() as session:
            session.execute(
                update(PassMapping)
                .where(PassMapping.customer_id == "c1")
                .values(claim_token="other-attempt")
            )

    provider.before_create["passsync-loyalty-c1"] = take_over
    # When the group is applied
    result = apply(db, ids, ctx)
    # Then c2 is recorded; c1's result is not (the other attempt owns the pass now)
    assert sorted(result.applied) == [ids[1]]
    [lost] = result.handed_on
    assert (lost.event_id, lost.reason) == (ids[0], HandOn.FAILED)
    assert isinstance(lost.error, ClaimLostError)
    c1 = mappings(db)[("c1", "loyalty")]
    assert (c1.claim_token, c1.provider_pass_id, c1.status) == ("other-attempt", None, "new")
    assert ledger(db)["a"] == ("pending", 0, None)


def test_concurrent_calls_record_every_event_once(
    db: Database, build: Callable[..., SyncContext], provider: HookedProvider
) -> None:
    ctx = build(window_ms=1000)
    ids = [store(db, make_event(f"e{n}", f"c{n}")) for n in range(30)]
    scoped: list[int] = []

    @contextmanager
    def scope(event_id: int) -> Iterator[None]:
        scoped.append(event_id)
        yield

    result = apply(db, ids, ctx, scope=scope, concurrency=8)
    assert sorted(result.applied) == ids and result.handed_on == []
    assert sorted(scoped) == ids
    assert provider.calls["create"] == 30
    assert {(s, a) for s, a, _ in ledger(db).values()} == {("handled", 1)}
    # A redelivered group changes nothing
    again = apply(db, ids, ctx, concurrency=8)
    assert all(r.already_handled for r in again.applied.values())
    assert provider.calls["create"] == 30
