"""A seeded CRM workload and the pure model of what the provider must show after it.

The workload mixes new customers, updates that change the tier or the points, no-op updates
(the same snapshot again) and bursts (several updates within a second, as a CRM's bulk save
sends them). Each event is a full
snapshot of the customer and `occurred_at` is strictly increasing per customer, so the
expected final state is the loyalty-rule fields folded over each customer's events in
`occurred_at` order (newest wins; ties, which the generator never makes, go by event id).
The benchmark (`bench/calls_per_event.py`) reuses it.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
TIERS = ("bronze", "silver", "gold", "platinum")
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Donald")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Knuth")
PASS_KEY = "loyalty"
PREFIX = "passsync"


@dataclass(frozen=True)
class Event:
    """One canonical CRM event: a full snapshot of the customer."""

    id: str
    type: str
    customer: str
    occurred_at: datetime
    first_name: str
    last_name: str
    email: str
    tier: str
    points: int

    def canonical(self) -> dict[str, Any]:
        """The event as the webhook contract's JSON object."""
        return {
            "id": self.id,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "customer": {
                "id": self.customer,
                "email": self.email,
                "first_name": self.first_name,
                "last_name": self.last_name,
                "attributes": {"tier": self.tier, "points": self.points},
            },
            "data": {},
        }

    def fields(self) -> dict[str, Any]:
        """The loyalty card's fields under the shipped `loyalty_card` rule."""
        return {
            "firstName": self.first_name,
            "lastName": self.last_name,
            "email": self.email,
            "tier": self.tier,
            "points": self.points,
        }


@dataclass
class Workload:
    """Events in the order a well-behaved source sends them, and what kind each one is."""

    seed: int
    events: list[Event]
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def customers(self) -> set[str]:
        return {e.customer for e in self.events}


def upid(customer: str) -> str:
    """The userProvidedId passsync derives for a URL-safe customer id (README)."""
    return f"{PREFIX}-{PASS_KEY}-{customer}"


def expected_passes(events: list[Event]) -> dict[str, dict[str, Any]]:
    """userProvidedId -> fields, applying every event in `occurred_at` order, whatever the
    order given. A null field would be left out by the rule and so keep the older value."""
    state: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: (e.occurred_at, e.id)):
        fields = state.setdefault(upid(event.customer), {})
        fields.update({k: v for k, v in event.fields().items() if v is not None})
    return state


@dataclass
class _Customer:
    id: str
    at: datetime
    snapshot: Event | None = None


class _Generator:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.events: list[Event] = []
        self.kinds: Counter[str] = Counter()

    def emit(self, customer: _Customer, kind: str, step: timedelta, **changes: Any) -> None:
        customer.at += step
        base = customer.snapshot
        if base is None:
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
            values: dict[str, Any] = {
                "first_name": first,
                "last_name": last,
                "email": f"{first.lower()}.{customer.id}@example.com",
                "tier": "bronze",
                "points": 0,
            }
        else:
            values = {k: getattr(base, k) for k in ("first_name", "last_name", "email")}
            values |= {"tier": base.tier, "points": base.points}
        values |= changes
        event_type = "customer.created" if base is None else "customer.updated"
        event = Event(
            f"evt-{self.seed}-{len(self.events):04d}",
            event_type,
            customer.id,
            customer.at,
            **values,
        )
        customer.snapshot = event
        self.events.append(event)
        self.kinds[kind] += 1

    def change(self, customer: _Customer, kind: str, step: timedelta) -> None:
        assert customer.snapshot is not None
        if self.rng.random() < 0.3:
            tiers = [t for t in TIERS if t != customer.snapshot.tier]
            self.emit(customer, kind, step, tier=self.rng.choice(tiers))
        else:
            gained = self.rng.randrange(5, 500, 5)
            self.emit(customer, kind, step, points=customer.snapshot.points + gained)

    def follow_up(self, customer: _Customer) -> None:
        """An update, a no-op update, or a burst of 3-5 updates 0.1-0.4 s apart."""
        roll = self.rng.random()
        gap = timedelta(seconds=self.rng.randrange(30, 3600))
        if roll < 0.6:
            self.change(customer, "update", gap)
        elif roll < 0.85:
            self.emit(customer, "noop", gap)
        else:
            self.change(customer, "burst", gap)
            for _ in range(self.rng.randrange(2, 5)):
                self.change(customer, "burst", timedelta(milliseconds=self.rng.randrange(100, 400)))


def generate(seed: int, *, customers: int = 40, events: int = 200) -> Workload:
    """A seeded workload of about `events` events over `customers` customers, sorted by time."""
    gen = _Generator(seed)
    people = [
        _Customer(f"cust-{seed}-{n:03d}", T0 + timedelta(seconds=gen.rng.randrange(0, 7200)))
        for n in range(customers)
    ]
    for person in people:
        gen.emit(person, "created", timedelta(0))
    while len(gen.events) < events:
        gen.follow_up(gen.rng.choice(people))
    ordered = sorted(gen.events, key=lambda e: (e.occurred_at, e.id))
    return Workload(seed, ordered, gen.kinds)


def bodies(events: list[Event], rng: random.Random, *, max_batch: int = 8) -> list[bytes]:
    """Webhook bodies in the given order: about a third batched (`{"events": [...]}`)."""
    out: list[bytes] = []
    index = 0
    while index < len(events):
        size = rng.randrange(2, max_batch + 1) if rng.random() < 0.35 else 1
        chunk = events[index : index + size]
        index += size
        if len(chunk) == 1:
            out.append(json.dumps(chunk[0].canonical()).encode())
        else:
            out.append(json.dumps({"events": [e.canonical() for e in chunk]}).encode())
    return out
