"""Building and running campaigns in-process against the in-memory provider."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import select

from worker.campaigns.dispatch import Chunk, tick
from worker.campaigns.importer import import_rows, read_csv
from worker.campaigns.models import CampaignRecipient
from worker.campaigns.runner import ChunkResult, run_chunk
from worker.campaigns.service import CampaignSpec, create_campaign, start
from worker.config import CampaignSettings
from worker.db import Database
from worker.sync.engine import SyncContext

SETTINGS = CampaignSettings(chunk_size=3, max_queued_chunks=2)


def csv_of(count: int, *, tier: str = "gold", start: int = 0) -> str:
    lines = ["customer_id,first_name,tier"]
    lines += [f"c-{i},Name{i},{tier}" for i in range(start, start + count)]
    return "\n".join(lines) + "\n"


def new_campaign(
    db: Database,
    ctx: SyncContext,
    text: str,
    *,
    started: bool = True,
    **spec: Any,
) -> int:
    """A campaign with the CSV's recipients, started unless told otherwise."""
    with db.session() as session:
        campaign = create_campaign(
            session, CampaignSpec(name=spec.pop("name", "spring"), **spec), ctx.rules
        )
        import_rows(session, campaign.id, read_csv(io.StringIO(text)), batch_rows=2)
        if started:
            start(session, campaign.id)
        return campaign.id


def dispatch(db: Database, settings: CampaignSettings = SETTINGS) -> list[Chunk]:
    with db.session() as session:
        return tick(session, settings)


def run(db: Database, ctx: SyncContext, chunk: Chunk, max_seconds: float = 60) -> ChunkResult:
    return run_chunk(
        db, ctx, chunk.campaign_id, chunk.chunk_id, max_seconds=max_seconds, max_attempts=3
    )


def drain(db: Database, ctx: SyncContext, rounds: int = 100) -> int:
    """Dispatch and run chunks until the dispatcher hands out nothing; the chunks run."""
    ran = 0
    for _ in range(rounds):
        chunks = dispatch(db)
        if not chunks:
            return ran
        for chunk in chunks:
            run(db, ctx, chunk)
            ran += 1
    raise AssertionError("the campaign did not finish")


def states(db: Database, campaign_id: int) -> dict[str, str]:
    with db.sessions() as session:
        rows = session.execute(
            select(CampaignRecipient.customer_id, CampaignRecipient.state).where(
                CampaignRecipient.campaign_id == campaign_id
            )
        ).all()
    return dict(rows)
