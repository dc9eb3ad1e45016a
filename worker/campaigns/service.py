"""Create, start, pause, resume and cancel campaigns; progress and the final report.

Domain code: the caller owns the transaction (nothing here commits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from worker.audit.models import AuditEntry
from worker.campaigns.models import (
    FINAL,
    OPEN_STATES,
    Campaign,
    CampaignImportError,
    CampaignRecipient,
    CampaignStatus,
    RecipientState,
)
from worker.db import utcnow
from worker.sync.rules import RuleSet, Verb

DEFAULT_EVENT_TYPE = "customer.updated"
RATE_WINDOW = timedelta(seconds=60)
REPORT_FAILURES = 100


class CampaignError(ValueError):
    """The request cannot be done (unknown campaign, wrong state, bad option): say why."""


class CampaignNotFoundError(CampaignError):
    pass


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    event_type: str | None = None
    rule: str | None = None
    template: str | None = None
    data: dict[str, Any] | None = None
    dry_run: bool = False
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    created_by: str = "system:passsync"


def resolve_event_type(
    rules: RuleSet, event_type: str | None, rule: str | None, template: str | None
) -> str:
    """The event type recipients become: given, or the first one the named rule (or the rule
    upserting the named template) listens to; it must reach at least one rule."""
    if sum(x is not None for x in (event_type, rule, template)) > 1:
        raise CampaignError("give at most one of event_type, rule, template")
    if rule is not None:
        found = [r for r in rules.rules if r.name == rule]
        if not found:
            raise CampaignError(f"no rule named {rule!r}")
        return sorted(found[0].on)[0]
    if template is not None:
        for r in rules.rules:
            if any(a.verb is Verb.UPSERT and a.template == template for a in r.actions):
                return sorted(r.on)[0]
        raise CampaignError(f"no rule upserts a pass with template {template!r}")
    chosen = event_type or DEFAULT_EVENT_TYPE
    if not any(chosen in r.on for r in rules.rules):
        raise CampaignError(f"no rule listens to event type {chosen!r}")
    return chosen


def create_campaign(session: Session, spec: CampaignSpec, rules: RuleSet) -> Campaign:
    """A draft campaign (import its recipients next); CampaignError on a bad option."""
    if spec.starts_at and spec.ends_at and spec.ends_at <= spec.starts_at:
        raise CampaignError("ends_at must be after starts_at")
    if not spec.name.strip():
        raise CampaignError("the name is empty")
    campaign = Campaign(
        name=spec.name.strip()[:200],
        status=CampaignStatus.DRAFT,
        event_type=resolve_event_type(rules, spec.event_type, spec.rule, spec.template),
        rule=spec.rule,
        template=spec.template,
        data=spec.data or {},
        dry_run=spec.dry_run,
        starts_at=spec.starts_at,
        ends_at=spec.ends_at,
        created_by=spec.created_by,
        total=0,
        import_errors=0,
    )
    session.add(campaign)
    session.flush()
    return campaign


def discard_empty_draft(session: Session, campaign_id: int) -> bool:
    """Delete a draft that holds no recipient, with its import errors; False when the
    campaign is not such a draft (then nothing is deleted)."""
    campaign = get_campaign(session, campaign_id, lock=True)
    has_recipient = session.scalar(
        select(CampaignRecipient.id).where(CampaignRecipient.campaign_id == campaign_id).limit(1)
    )
    if campaign.status != CampaignStatus.DRAFT or has_recipient is not None:
        return False
    session.execute(
        delete(CampaignImportError).where(CampaignImportError.campaign_id == campaign_id)
    )
    session.execute(delete(Campaign).where(Campaign.id == campaign_id))
    session.expunge(campaign)
    return True


def get_campaign(session: Session, campaign_id: int, *, lock: bool = False) -> Campaign:
    stmt = select(Campaign).where(Campaign.id == campaign_id)
    if lock:
        stmt = stmt.with_for_update()
    found = session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
    if found is None:
        raise CampaignNotFoundError(f"no campaign {campaign_id}")
    return found


def list_campaigns(session: Session, limit: int = 50) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


def start(session: Session, campaign_id: int) -> Campaign:
    """Draft -> running (or scheduled, when its start time is ahead: beat starts it)."""
    campaign = _in(session, campaign_id, (CampaignStatus.DRAFT,), "start")
    now = utcnow()
    if campaign.starts_at is not None and campaign.starts_at > now:
        campaign.status = CampaignStatus.SCHEDULED
    else:
        campaign.status, campaign.started_at = CampaignStatus.RUNNING, now
    return campaign


def pause(session: Session, campaign_id: int) -> Campaign:
    """Stop handing out recipients; the ones being sent finish, queued ones go back."""
    allowed = (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED)
    campaign = _in(session, campaign_id, allowed, "pause")
    campaign.status = CampaignStatus.PAUSED
    return campaign


def resume(session: Session, campaign_id: int) -> Campaign:
    campaign = _in(session, campaign_id, (CampaignStatus.PAUSED,), "resume")
    campaign.status = CampaignStatus.RUNNING
    campaign.started_at = campaign.started_at or utcnow()
    return campaign


def cancel(session: Session, campaign_id: int) -> Campaign:
    """No more recipients are sent (the ones being sent finish); the report is written."""
    open_ = (
        CampaignStatus.DRAFT,
        CampaignStatus.SCHEDULED,
        CampaignStatus.RUNNING,
        CampaignStatus.PAUSED,
    )
    campaign = _in(session, campaign_id, open_, "cancel")
    close(session, campaign, CampaignStatus.CANCELLED, "campaign cancelled")
    return campaign


def close(session: Session, campaign: Campaign, status: CampaignStatus, reason: str) -> None:
    """Final state: unsent recipients are cancelled with `reason`, the report is stored."""
    now = utcnow()
    session.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.state.in_([RecipientState.PENDING, RecipientState.QUEUED]),
        )
        .values(state=RecipientState.CANCELLED, error=reason, chunk=None, updated_at=now)
    )
    campaign.status = status
    campaign.finished_at = now
    campaign.report = build_report(session, campaign)


def _in(
    session: Session, campaign_id: int, allowed: tuple[CampaignStatus, ...], verb: str
) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in allowed:
        raise CampaignError(f"cannot {verb} campaign {campaign_id}: it is {campaign.status}")
    return campaign


@dataclass(frozen=True)
class Progress:
    id: int
    name: str
    status: str
    dry_run: bool
    total: int
    done: int
    skipped: int
    failed: int
    cancelled: int
    remaining: int
    import_errors: int
    rate_per_second: float
    eta_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def progress(session: Session, campaign_id: int) -> Progress:
    """Counts by state, the finishing rate over the last minute and the time left at it."""
    campaign = get_campaign(session, campaign_id)
    counts = state_counts(session, campaign_id)
    remaining = sum(counts.get(s, 0) for s in OPEN_STATES)
    rate = _rate(session, campaign)
    eta = None if campaign.status in FINAL else (remaining / rate if rate > 0 else None)
    return Progress(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        dry_run=campaign.dry_run,
        total=campaign.total,
        done=counts.get(RecipientState.DONE, 0),
        skipped=counts.get(RecipientState.SKIPPED, 0),
        failed=counts.get(RecipientState.FAILED, 0),
        cancelled=counts.get(RecipientState.CANCELLED, 0),
        remaining=remaining,
        import_errors=campaign.import_errors,
        rate_per_second=round(rate, 2),
        eta_seconds=None if eta is None else round(eta, 1),
    )


def state_counts(session: Session, campaign_id: int) -> dict[str, int]:
    rows = session.execute(
        select(CampaignRecipient.state, func.count())
        .where(CampaignRecipient.campaign_id == campaign_id)
        .group_by(CampaignRecipient.state)
    ).all()
    return {str(state): int(count) for state, count in rows}


def _rate(session: Session, campaign: Campaign) -> float:
    if campaign.started_at is None:
        return 0.0
    now = utcnow()
    since = max(now - RATE_WINDOW, campaign.started_at)
    end = campaign.finished_at or now
    finished = session.scalar(
        select(func.count()).where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.finished_at >= since,
        )
    )
    seconds = (end - since).total_seconds()
    return (finished or 0) / seconds if seconds > 0 else 0.0


def build_report(session: Session, campaign: Campaign) -> dict[str, Any]:
    """The final report: counts, outcomes, provider calls, failures and import errors."""
    counts = state_counts(session, campaign.id)
    outcomes = dict(
        session.execute(
            select(CampaignRecipient.outcome, func.count())
            .where(CampaignRecipient.campaign_id == campaign.id)
            .where(CampaignRecipient.outcome.is_not(None))
            .group_by(CampaignRecipient.outcome)
        ).all()
    )
    started, finished = campaign.started_at, campaign.finished_at or utcnow()
    seconds = (finished - started).total_seconds() if started else 0.0
    sent = counts.get(RecipientState.DONE, 0) + counts.get(RecipientState.SKIPPED, 0)
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "dry_run": campaign.dry_run,
        "event_type": campaign.event_type,
        "total": campaign.total,
        "states": {s.value: counts.get(s, 0) for s in RecipientState},
        "outcomes": dict(sorted(outcomes.items())),
        "provider_calls": _calls(session, campaign),
        "started_at": started.isoformat() if started else None,
        "finished_at": finished.isoformat(),
        "seconds": round(seconds, 1),
        "recipients_per_second": round(sent / seconds, 2) if seconds > 0 else None,
        "failures": _failures(session, campaign.id),
        "import_errors": campaign.import_errors,
        "first_import_errors": import_errors(session, campaign.id, limit=REPORT_FAILURES),
    }


def _calls(session: Session, campaign: Campaign) -> int:
    """Dry run: the calls it would have made; otherwise the audited calls it made."""
    if campaign.dry_run:
        total = session.scalar(
            select(func.sum(CampaignRecipient.calls)).where(
                CampaignRecipient.campaign_id == campaign.id
            )
        )
        return int(total or 0)
    made = session.scalar(
        select(func.count()).where(
            AuditEntry.actor_kind == "campaign", AuditEntry.actor_id == str(campaign.id)
        )
    )
    return int(made or 0)


def _failures(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(CampaignRecipient.line, CampaignRecipient.customer_id, CampaignRecipient.error)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.state == RecipientState.FAILED,
        )
        .order_by(CampaignRecipient.line)
        .limit(REPORT_FAILURES)
    ).all()
    return [{"line": line, "customer_id": c, "error": error} for line, c, error in rows]


def import_errors(session: Session, campaign_id: int, *, limit: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(CampaignImportError.line, CampaignImportError.message)
        .where(CampaignImportError.campaign_id == campaign_id)
        .order_by(CampaignImportError.line)
        .limit(limit)
    ).all()
    return [{"line": line, "message": message} for line, message in rows]
