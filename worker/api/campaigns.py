"""Admin API for campaigns: create from a JSON list, start, pause, resume, cancel, progress,
report. Read scope to look, write scope to change; beat's dispatcher does the sending."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from worker.api.auth import ReadAccess, WriteAccess
from worker.api.campaign_import import import_stream
from worker.api.context import Context
from worker.api.errors import responses
from worker.api.params import Limit, RowId
from worker.bounds import JsonObject, JsonValue, Moment, Text
from worker.campaigns import service
from worker.campaigns.importer import ImportResult, Row, RowError, import_rows, read_items
from worker.campaigns.models import Campaign, CampaignStatus
from worker.campaigns.service import CampaignError, CampaignNotFoundError, CampaignSpec
from worker.sync.rules import compile_rules

router = APIRouter(prefix="/api/campaigns", tags=["campaigns"])
T = TypeVar("T")
# Recipients in one JSON request (the body limit, api.max_body_bytes, applies as well).
MAX_INLINE_RECIPIENTS = 10_000


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Lengths as stored (campaigns table).
    name: Text = Field(min_length=1, max_length=200)
    event_type: Text | None = Field(default=None, max_length=128)
    rule: Text | None = Field(default=None, max_length=255)
    template: Text | None = Field(default=None, max_length=255)
    data: JsonObject = {}
    dry_run: bool = False
    starts_at: Moment | None = None
    ends_at: Moment | None = None
    start: bool = False
    # {"customer_id": ..., "email": ..., "attributes": {...}, "data": {...}} or
    # {"customer": {...}, "data": {...}}; a bad item is reported by its position (from 1).
    # Larger lists: `passsync campaign import` streams a file of any size.
    recipients: list[JsonValue] = Field(min_length=1, max_length=MAX_INLINE_RECIPIENTS)


class CreatedOut(BaseModel):
    campaign: dict[str, Any]
    imported: int
    import_errors: list[dict[str, Any]]


@router.post("", status_code=status.HTTP_201_CREATED, responses=responses(409))
def create(body: CampaignIn, principal: WriteAccess, ctx: Context) -> CreatedOut:
    spec = CampaignSpec(
        name=body.name,
        event_type=body.event_type,
        rule=body.rule,
        template=body.template,
        data=body.data,
        dry_run=body.dry_run,
        starts_at=_utc(body.starts_at),
        ends_at=_utc(body.ends_at),
        created_by=f"admin:{principal.name}",
    )
    batch = ctx.settings.campaigns.import_batch_rows
    with ctx.db.session() as session:
        campaign = _guard(
            lambda: service.create_campaign(session, spec, compile_rules(ctx.settings.sync)),
            status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
        result = import_rows(session, campaign.id, read_items(body.recipients), batch_rows=batch)
        if body.start:
            _guard(lambda: service.start(session, campaign.id))
        shown = service.progress(session, campaign.id).as_dict()
    errors = [{"line": e.line, "message": e.message} for e in result.first_errors]
    return CreatedOut(campaign=shown, imported=result.imported, import_errors=errors)


@router.get("")
def list_all(principal: ReadAccess, ctx: Context, limit: Limit = 50) -> list[dict[str, Any]]:
    with ctx.db.session() as session:
        return [_summary(c) for c in service.list_campaigns(session, limit)]


@router.get("/{campaign_id}")
def show(campaign_id: RowId, principal: ReadAccess, ctx: Context) -> dict[str, Any]:
    """Progress: done, skipped, failed, remaining, rate and ETA."""
    with ctx.db.session() as session:
        return _guard(lambda: service.progress(session, campaign_id)).as_dict()


@router.get("/{campaign_id}/report")
def report(campaign_id: RowId, principal: ReadAccess, ctx: Context) -> dict[str, Any]:
    """The final report (or, while it runs, the report so far)."""
    with ctx.db.session() as session:
        campaign = _guard(lambda: service.get_campaign(session, campaign_id))
        return campaign.report or service.build_report(session, campaign)


class ImportedOut(BaseModel):
    campaign: dict[str, Any]
    imported: int
    errors: int
    import_errors: list[dict[str, Any]]


# Declared before /{campaign_id}/{verb} so "recipients" is never read as a verb.
@router.post(
    "/{campaign_id}/recipients",
    responses=responses(400, 409),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def add_recipients(
    campaign_id: RowId, request: Request, principal: WriteAccess, ctx: Context
) -> ImportedOut:
    """Append recipients to a draft campaign: NDJSON, one recipient object per line (as in
    `recipients`), streamed; up to `campaigns.max_import_bytes`, one transaction."""
    batch = ctx.settings.campaigns.import_batch_rows

    def importer(session: Session, rows: Iterator[Row | RowError]) -> ImportResult:
        campaign = _guard(lambda: service.get_campaign(session, campaign_id, lock=True))
        if campaign.status != CampaignStatus.DRAFT:
            raise HTTPException(status.HTTP_409_CONFLICT, "recipients go into a draft campaign")
        return import_rows(session, campaign_id, rows, batch_rows=batch)

    result = await import_stream(ctx.db, request.stream(), importer)
    with ctx.db.session() as session:
        shown = service.progress(session, campaign_id).as_dict()
    errors = [{"line": e.line, "message": e.message} for e in result.first_errors]
    return ImportedOut(
        campaign=shown, imported=result.imported, errors=result.errors, import_errors=errors
    )


@router.post("/{campaign_id}/{verb}", responses=responses(409))
def change(
    campaign_id: RowId,
    verb: Annotated[str, Path(max_length=32)],
    principal: WriteAccess,
    ctx: Context,
) -> dict[str, Any]:
    """start, pause, resume or cancel."""
    action = VERBS.get(verb)
    if action is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown action {verb!r}")
    with ctx.db.session() as session:
        _guard(lambda: action(session, campaign_id))
    with ctx.db.session() as session:
        return service.progress(session, campaign_id).as_dict()


VERBS: dict[str, Callable[[Session, int], Campaign]] = {
    "start": service.start,
    "pause": service.pause,
    "resume": service.resume,
    "cancel": service.cancel,
}


def _guard(call: Callable[[], T], conflict: int = status.HTTP_409_CONFLICT) -> T:
    """404 for an unknown campaign; `conflict` (409: wrong state) for any other refusal."""
    try:
        return call()
    except CampaignNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except CampaignError as exc:
        raise HTTPException(conflict, str(exc)) from None


def _summary(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "dry_run": campaign.dry_run,
        "total": campaign.total,
        "created_at": campaign.created_at.isoformat(),
    }


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment
