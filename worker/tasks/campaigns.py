"""Campaign tasks: the dispatcher tick (beat) and one bulk task per chunk of recipients."""

from __future__ import annotations

import logging
import random
from typing import Any

from worker.audit import Actor
from worker.campaigns.dispatch import Chunk, tick, top_up
from worker.campaigns.runner import run_chunk
from worker.observability import logs
from worker.ratelimit.lanes import in_lane
from worker.tasks.app import BULK_QUEUE, celery_app
from worker.tasks.runtime import get_runtime

log = logging.getLogger("passsync.tasks.campaigns")


@celery_app.task(name="passsync.campaign_tick", acks_late=True)
def campaign_tick() -> int:
    """Start and end campaigns on time, recover lost chunks, top every campaign up."""
    runtime = get_runtime()
    with runtime.db.session() as session:
        chunks = tick(session, runtime.settings.campaigns)
    publish_chunks(chunks)
    return len(chunks)


@celery_app.task(
    name="passsync.campaign_chunk",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def campaign_chunk(self: Any, campaign_id: int, chunk_id: str) -> str:
    """Apply one chunk in the bulk lane, on behalf of the campaign; then top the campaign up,
    so the next chunk goes out as soon as this one is done."""
    runtime = get_runtime()
    settings = runtime.settings
    logs.bind(
        campaign_id=campaign_id,
        actor=f"campaign:{campaign_id}",
        account=settings.sync.default_account,
    )
    with in_lane("bulk"), runtime.audited(Actor.campaign(campaign_id)):
        result = run_chunk(
            runtime.db,
            runtime.sync,
            campaign_id,
            chunk_id,
            max_seconds=settings.campaigns.chunk_max_seconds,
            max_attempts=settings.sync.max_attempts,
        )
    if result.retry_after is not None:
        raise self.retry(countdown=chunk_countdown(result.retry_after), max_retries=None)
    with runtime.db.session() as session:
        chunks = top_up(session, campaign_id, settings.campaigns)
    publish_chunks(chunks)
    return f"finished={result.finished} released={result.released}"


def chunk_countdown(retry_after: float) -> float:
    """The provider's or the limiter's wait, jittered, always far below the visibility
    timeout and the dispatcher's requeue time (so the retry is never doubled)."""
    settings = get_runtime().settings
    cap = min(
        settings.celery.visibility_timeout_seconds / 2,
        settings.campaigns.requeue_after_seconds / 2,
    )
    jitter = random.uniform(0, 0.25)  # noqa: S311 - spreads the retries, not crypto
    return max(0.0, min(retry_after + jitter, cap))


def publish_chunks(chunks: list[Chunk]) -> None:
    """One bulk task per chunk, after the commit that queued them (a lost publish is
    recovered by the dispatcher after campaigns.requeue_after_seconds)."""
    if not chunks:
        return
    with celery_app.producer_or_acquire() as producer:
        for chunk in chunks:
            campaign_chunk.apply_async(
                args=[chunk.campaign_id, chunk.chunk_id], queue=BULK_QUEUE, producer=producer
            )
