"""Campaigns in-process: dispatch in bounded chunks, exactly once, skip, pause, cancel, dry run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from tests.campaigns.helpers import SETTINGS, csv_of, dispatch, drain, new_campaign, run, states
from worker.campaigns.dispatch import requeue_stale
from worker.campaigns.models import CampaignRecipient, RecipientState
from worker.campaigns.service import (
    CampaignError,
    CampaignSpec,
    cancel,
    create_campaign,
    get_campaign,
    pause,
    progress,
    resume,
)
from worker.config import Settings
from worker.db import Database, utcnow
from worker.inbound.models import InboundEvent
from worker.providers.credentials import CredentialRefusedError
from worker.providers.errors import RateLimitedError, RejectedError
from worker.providers.memory import MemoryProvider
from worker.sync.engine import SyncContext
from worker.sync.templates import TemplateResolver


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def ctx(make_settings: Callable[..., Settings], provider: MemoryProvider) -> SyncContext:
    return SyncContext(make_settings(), provider, TemplateResolver(provider))


def test_a_campaign_issues_every_pass_once_in_bounded_chunks(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given a started campaign of 10 recipients (chunks of 3, at most 2 queued at once)
    campaign_id = new_campaign(db, ctx, csv_of(10))
    # When the dispatcher runs once
    first = dispatch(db)
    # Then only two chunks are out (the broker never holds more)
    assert len(first) == 2
    assert dispatch(db) == []
    # And when the chunks run and the dispatcher keeps going
    for chunk in first:
        assert run(db, ctx, chunk).finished == 3
    drain(db, ctx)
    # Then every recipient has one pass with its row's fields, and the campaign is complete
    assert set(states(db, campaign_id).values()) == {"done"}
    assert provider.calls["create"] == 10
    assert sorted(p.fields["firstName"] for p in provider.live()) == sorted(
        f"Name{i}" for i in range(10)
    )
    with db.sessions() as session:
        campaign = get_campaign(session, campaign_id)
        assert campaign.status == "completed"
        assert campaign.report is not None
        assert campaign.report["states"]["done"] == 10
        assert campaign.report["outcomes"] == {"loyalty:created": 10}
        sources = session.scalars(select(InboundEvent.source).distinct()).all()
    assert sources == ["campaign"]


def test_recipients_whose_pass_already_matches_are_skipped_without_a_call(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given a first campaign has issued 4 passes
    new_campaign(db, ctx, csv_of(4), name="first")
    drain(db, ctx)
    # When a second campaign sends the same data to the same customers, plus one new one
    second = new_campaign(db, ctx, csv_of(5), name="second")
    drain(db, ctx)
    # Then the 4 are skipped with no call, and only the new customer is created
    assert sorted(states(db, second).values()) == ["done"] + ["skipped"] * 4
    assert provider.calls["create"] == 5
    assert provider.calls["update"] == 0


def test_a_lost_chunk_is_handed_out_again_and_no_recipient_is_done_twice(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given a chunk that ran, and the same recipients handed out again as if its worker had
    # died before recording (the ledger already has their events, handled)
    campaign_id = new_campaign(db, ctx, csv_of(3))
    (chunk,) = dispatch(db)
    run(db, ctx, chunk)
    with db.session() as session:
        session.execute(
            update(CampaignRecipient).values(
                state=RecipientState.QUEUED, updated_at=utcnow() - timedelta(hours=1)
            )
        )
    # When the dispatcher recovers the stale rows and runs them again
    with db.session() as session:
        assert requeue_stale(session, utcnow() - timedelta(seconds=60)) == 3
    drain(db, ctx)
    # Then each recipient is done, and the provider saw each create once
    assert set(states(db, campaign_id).values()) == {"done"}
    assert provider.calls["create"] == 3
    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundEvent)) == 3


def test_dry_run_counts_the_calls_it_would_make_and_makes_none(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given 2 passes already issued, and a dry run over them and 3 new customers
    new_campaign(db, ctx, csv_of(2), name="real")
    drain(db, ctx)
    calls_before = sum(provider.calls.values())
    dry = new_campaign(db, ctx, csv_of(5), name="dry", dry_run=True)
    # When it runs
    drain(db, ctx)
    # Then no call was made, nothing was recorded in the ledger, and it counted 3 creates
    assert sum(provider.calls.values()) == calls_before
    with db.sessions() as session:
        campaign = get_campaign(session, dry)
        assert session.scalar(select(func.count()).select_from(InboundEvent)) == 2
    assert campaign.report is not None
    assert campaign.report["provider_calls"] == 3
    assert campaign.report["outcomes"] == {"loyalty:would_create": 3, "loyalty:would_skip": 2}


def test_pause_sends_nothing_more_and_resume_finishes(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given a running campaign with chunks already queued
    campaign_id = new_campaign(db, ctx, csv_of(6))
    chunks = dispatch(db)
    # When it is paused before they run
    with db.session() as session:
        pause(session, campaign_id)
    results = [run(db, ctx, chunk) for chunk in chunks]
    # Then the queued recipients go back to pending, no call is made, nothing more is queued
    assert [r.stopped for r in results] == ["campaign not running"] * 2
    assert provider.calls["create"] == 0
    assert set(states(db, campaign_id).values()) == {"pending"}
    assert dispatch(db) == []
    # And after resume every recipient is done once
    with db.session() as session:
        resume(session, campaign_id)
    drain(db, ctx)
    assert set(states(db, campaign_id).values()) == {"done"}
    assert provider.calls["create"] == 6


def test_cancel_stops_the_campaign_and_reports_what_was_not_sent(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given a campaign with one chunk done and one queued
    campaign_id = new_campaign(db, ctx, csv_of(6))
    first, second = dispatch(db)
    run(db, ctx, first)
    # When it is cancelled
    with db.session() as session:
        cancel(session, campaign_id)
    # Then the queued chunk sends nothing, and the report counts 3 done and 3 cancelled
    assert run(db, ctx, second).finished == 0
    assert provider.calls["create"] == 3
    assert dispatch(db) == []
    with db.sessions() as session:
        report = get_campaign(session, campaign_id).report
        with pytest.raises(CampaignError, match="it is cancelled"):
            resume(session, campaign_id)
    assert report is not None
    assert report["status"] == "cancelled"
    assert report["states"]["done"] == 3 and report["states"]["cancelled"] == 3


def test_a_rate_limit_keeps_the_chunk_queued_for_a_retry_without_failing_anyone(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given the provider answers the first create with 429 (Retry-After 7)
    campaign_id = new_campaign(db, ctx, csv_of(3))
    (chunk,) = dispatch(db, SETTINGS.model_copy(update={"max_queued_chunks": 1}))
    provider.fail_next["create"] = [RateLimitedError("429", retry_after=7)]
    # When the chunk runs
    result = run(db, ctx, chunk)
    # Then it stops at once with the provider's wait, its recipients still queued in it
    assert result.retry_after == 7
    assert result.finished == 0
    assert set(states(db, campaign_id).values()) == {"queued"}
    # And the retry (same chunk) finishes them, with no attempt used up
    assert run(db, ctx, chunk).finished == 3
    assert set(states(db, campaign_id).values()) == {"done"}
    with db.sessions() as session:
        assert set(session.scalars(select(InboundEvent.attempts))) == {1}


def test_a_refused_credential_keeps_the_chunk_queued_like_a_rate_limit(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given the account's credential is refused (held until a rotation, issue 14)
    campaign_id = new_campaign(db, ctx, csv_of(3))
    (chunk,) = dispatch(db, SETTINGS.model_copy(update={"max_queued_chunks": 1}))
    provider.fail_next["create"] = [CredentialRefusedError("memory", 401, retry_after=4)]
    # When the chunk runs
    result = run(db, ctx, chunk)
    # Then it waits the hold out, nobody failed, no attempt used; the retry finishes them
    assert result.retry_after == 4
    assert set(states(db, campaign_id).values()) == {"queued"}
    assert run(db, ctx, chunk).finished == 3
    with db.sessions() as session:
        assert set(session.scalars(select(InboundEvent.attempts))) == {1}
        assert list(session.scalars(select(InboundEvent.status).distinct())) == ["handled"]


def test_a_refused_recipient_fails_with_the_reason_and_the_rest_go_on(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given the provider refuses the first create
    campaign_id = new_campaign(db, ctx, csv_of(3))
    provider.fail_next["create"] = [RejectedError("bad field", status=400)]
    # When the campaign runs
    drain(db, ctx)
    # Then that recipient failed (its event is dead) and the other two are done
    assert sorted(states(db, campaign_id).values()) == ["done", "done", "failed"]
    with db.sessions() as session:
        campaign = get_campaign(session, campaign_id)
        dead = session.scalars(select(InboundEvent.status).where(InboundEvent.status == "dead"))
        assert list(dead) == ["dead"]
    assert campaign.report is not None
    (failure,) = campaign.report["failures"]
    assert failure == {"line": 2, "customer_id": "c-0", "error": "bad field"}


def test_a_time_slice_hands_the_rest_back(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given a chunk of 3 and a slice that is over after the first recipient
    campaign_id = new_campaign(db, ctx, csv_of(3))
    (chunk,) = dispatch(db, SETTINGS.model_copy(update={"max_queued_chunks": 1}))
    # When it runs
    result = run(db, ctx, chunk, max_seconds=-1)
    # Then one is done and two are pending again (for another task)
    assert (result.finished, result.released) == (1, 2)
    assert sorted(states(db, campaign_id).values()) == ["done", "pending", "pending"]


def test_a_scheduled_campaign_starts_on_time_and_an_ended_one_sends_no_more(
    db: Database, ctx: SyncContext, provider: MemoryProvider
) -> None:
    # Given one campaign that starts in an hour and one whose end time has passed
    later = new_campaign(db, ctx, csv_of(2), starts_at=utcnow() + timedelta(hours=1))
    ended = new_campaign(db, ctx, csv_of(2, start=10), ends_at=utcnow() + timedelta(milliseconds=1))
    # When the dispatcher runs
    assert dispatch(db) == []
    # Then the first waits (scheduled), the second ended with its recipients cancelled
    with db.sessions() as session:
        assert get_campaign(session, later).status == "scheduled"
        assert get_campaign(session, ended).status == "ended"
    assert set(states(db, ended).values()) == {"cancelled"}
    # And once its start time has come, the first runs
    with db.session() as session:
        get_campaign(session, later).starts_at = utcnow() - timedelta(seconds=1)
    drain(db, ctx)
    assert set(states(db, later).values()) == {"done"}
    assert provider.calls["create"] == 2


def test_progress_counts_every_state(db: Database, ctx: SyncContext) -> None:
    campaign_id = new_campaign(db, ctx, csv_of(6))
    run(db, ctx, dispatch(db)[0])
    with db.sessions() as session:
        shown = progress(session, campaign_id)
    assert (shown.total, shown.done, shown.remaining, shown.status) == (6, 3, 3, "running")
    assert shown.rate_per_second > 0
    assert shown.eta_seconds is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"event_type": "order.completed"}, "no rule listens to event type 'order.completed'"),
        ({"rule": "nope"}, "no rule named 'nope'"),
        ({"template": "Nope"}, "no rule upserts a pass with template 'Nope'"),
        ({"rule": "loyalty_card", "template": "Loyalty Card"}, "at most one of"),
    ],
)
def test_a_campaign_must_reach_a_rule(
    db: Database, ctx: SyncContext, options: dict[str, str], message: str
) -> None:
    with db.session() as session, pytest.raises(CampaignError, match=message):
        create_campaign(session, CampaignSpec(name="x", **options), ctx.rules)  # type: ignore[arg-type]


def test_rule_and_template_choose_the_rules_event_type(db: Database, ctx: SyncContext) -> None:
    with db.session() as session:
        by_rule = create_campaign(session, CampaignSpec(name="a", rule="loyalty_card"), ctx.rules)
        by_tpl = create_campaign(
            session, CampaignSpec(name="b", template="Loyalty Card"), ctx.rules
        )
        assert (by_rule.event_type, by_tpl.event_type) == ("customer.created",) * 2
