"""The dedup trade-off of a purged ledger row: a resent event is stored again, and the engine
finds its pass already at that event or newer, so the provider is not called again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from tests.sync.test_engine import make_event
from worker.config import RetentionSettings, Settings
from worker.db import Database
from worker.inbound.ledger import record_events
from worker.inbound.models import InboundEvent
from worker.providers.memory import MemoryProvider
from worker.retention.purge import run_retention
from worker.sync.engine import Outcome, SyncContext, process_event
from worker.sync.templates import TemplateResolver


def test_a_purged_event_sent_again_is_applied_as_stale_with_no_provider_call(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    provider = MemoryProvider()
    ctx = SyncContext(make_settings(), provider, TemplateResolver(provider))
    first, later = make_event("e1", minutes=0), make_event("e2", minutes=5, tier="silver")
    with db.session() as session:
        ids = record_events(session, "crm", [first, later]).accepted_ids
    for ledger_id in ids:
        with db.session() as session:
            process_event(session, ledger_id, ctx)
    calls = sum(provider.calls.values())
    # Both events are 40 days old: past the 30-day window
    aged = datetime.now(UTC) - timedelta(days=40)
    with db.session() as session:
        session.execute(update(InboundEvent).values(received_at=aged, handled_at=aged))
    assert run_retention(db, RetentionSettings(), sleep=lambda _s: None).purged == 2

    # When the sender resends the first event, it is no longer a duplicate...
    with db.session() as session:
        resent = record_events(session, "crm", [first])
    assert (len(resent.accepted_ids), resent.duplicates) == (1, 0)
    # ...but the engine applies nothing: the pass already reflects a newer event
    with db.session() as session:
        result = process_event(session, resent.accepted_ids[0], ctx)
    assert [p.outcome for p in result.passes] == [Outcome.STALE]
    assert sum(provider.calls.values()) == calls
