"""The dispatcher: start and end campaigns on time, hand out bounded chunks, recover lost ones.

Chunks are recipient rows marked `queued` with a fresh chunk id; the caller publishes one
bulk task per returned chunk after its commit. Each campaign has at most
`max_queued_chunks` chunks queued or running, so the broker never holds more than that,
and new chunks go out only as old ones finish: the pace the shared limiter allows.
Domain code: nothing here commits.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from worker.campaigns.models import (
    FINAL,
    OPEN_STATES,
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    RecipientState,
)
from worker.campaigns.service import close
from worker.config import CampaignSettings
from worker.db import utcnow


@dataclass(frozen=True)
class Chunk:
    campaign_id: int
    chunk_id: str


def tick(session: Session, settings: CampaignSettings) -> list[Chunk]:
    """One dispatcher pass over every campaign; the chunks to publish after the commit."""
    now = utcnow()
    _start_due(session, now)
    _end_due(session, now)
    requeue_stale(session, now - timedelta(seconds=settings.requeue_after_seconds))
    chunks: list[Chunk] = []
    running = session.scalars(
        select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING).order_by(Campaign.id)
    ).all()
    for campaign_id in running:
        chunks.extend(top_up(session, campaign_id, settings))
    return chunks


def top_up(session: Session, campaign_id: int, settings: CampaignSettings) -> list[Chunk]:
    """Queue pending recipients in chunks up to the campaign's bound; completes it when
    nothing is left."""
    campaign = session.get(Campaign, campaign_id, populate_existing=True)
    if campaign is None or campaign.status != CampaignStatus.RUNNING:
        return []
    size = settings.chunk_size
    outstanding = _count(session, campaign_id, (RecipientState.QUEUED, RecipientState.RUNNING))
    room = settings.max_queued_chunks - math.ceil(outstanding / size)
    chunks: list[Chunk] = []
    for _ in range(max(room, 0)):
        chunk = _queue_chunk(session, campaign_id, size)
        if chunk is None:
            break
        chunks.append(chunk)
    if not chunks and outstanding == 0 and not _has_pending(session, campaign_id):
        close(session, campaign, CampaignStatus.COMPLETED, "campaign completed")
    return chunks


def _queue_chunk(session: Session, campaign_id: int, size: int) -> Chunk | None:
    pick = (
        select(CampaignRecipient.id)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.state == RecipientState.PENDING,
        )
        .order_by(CampaignRecipient.id)
        .limit(size)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Two dispatchers at once take different rows instead of waiting on each other.
        pick = pick.with_for_update(skip_locked=True)
    ids = list(session.scalars(pick))
    if not ids:
        return None
    chunk = Chunk(campaign_id, uuid.uuid4().hex)
    session.execute(
        update(CampaignRecipient)
        .where(CampaignRecipient.id.in_(ids), CampaignRecipient.state == RecipientState.PENDING)
        .values(state=RecipientState.QUEUED, chunk=chunk.chunk_id, updated_at=utcnow())
    )
    return chunk


def requeue_stale(session: Session, before: datetime) -> int:
    """Hand out again recipients queued or started before `before` whose task was lost (a
    killed worker, a message dropped between commit and publish); returns how many."""
    # Only live campaigns' rows, through the (campaign_id, state, id) index: a tick every
    # second must not scan every recipient ever imported.
    live = select(Campaign.id).where(Campaign.status.not_in(FINAL))
    result = session.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id.in_(live),
            CampaignRecipient.state.in_([RecipientState.QUEUED, RecipientState.RUNNING]),
            CampaignRecipient.updated_at < before,
        )
        .values(state=RecipientState.PENDING, chunk=None, updated_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _start_due(session: Session, now: datetime) -> None:
    session.execute(
        update(Campaign)
        .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.starts_at <= now)
        .values(status=CampaignStatus.RUNNING, started_at=now, updated_at=now)
    )


def _end_due(session: Session, now: datetime) -> None:
    live = (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED)
    due = session.scalars(
        select(Campaign).where(Campaign.status.in_(live), Campaign.ends_at <= now).with_for_update()
    ).all()
    for campaign in due:
        close(session, campaign, CampaignStatus.ENDED, "campaign end time passed")


def _count(session: Session, campaign_id: int, states: tuple[RecipientState, ...]) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                CampaignRecipient.campaign_id == campaign_id, CampaignRecipient.state.in_(states)
            )
        )
        or 0
    )


def _has_pending(session: Session, campaign_id: int) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    CampaignRecipient.campaign_id == campaign_id,
                    CampaignRecipient.state.in_(OPEN_STATES),
                )
            )
        )
    )
