"""The adoption funnel: known -> issued -> downloaded -> installed -> used -> removed.

Every step counts passes (one unit throughout). Wallet apps do not report opens, so the
steps are what can be known: a pass known (a rule gave a customer a pass: a mapping row),
issued (the provider created it: a provider pass id in the mapping), downloaded (saved on a
device at least once: a provider registration callback), installed (on a device now), used
(a valid scan), removed (on no device any more after having been on one).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from worker.adoption.models import PassAdoption
from worker.campaigns.models import Campaign, CampaignRecipient, RecipientState
from worker.scans.models import PassUsage, Scan, ScanStatus
from worker.sync.models import PassMapping

STEPS = ("known", "issued", "downloaded", "installed", "used", "removed")
# Each step's rate is taken against this earlier step.
RATE_BASE = {
    "issued": "known",
    "downloaded": "issued",
    "installed": "downloaded",
    "used": "issued",
    "removed": "downloaded",
}


@dataclass(frozen=True)
class Filters:
    template: str | None = None  # template id or name
    pass_key: str | None = None
    campaign: int | None = None
    platform: str | None = None
    since: date | None = None  # by the day a pass was issued
    until: date | None = None


UNIT = "passes"


@dataclass(frozen=True)
class _Pass:
    issued: bool
    issued_at: datetime
    platform: str | None
    active_devices: int
    installs: int
    removals: int
    first_installed_at: datetime | None
    removed_at: datetime | None
    used_at: datetime | None

    @property
    def downloaded(self) -> bool:
        return self.installs > 0

    @property
    def removed(self) -> bool:
        return self.downloaded and self.active_devices == 0 and self.removals > 0


@dataclass
class Funnel:
    counts: dict[str, int]
    rates: dict[str, float | None]
    time_to_install_seconds: dict[str, float | None]
    platforms: dict[str, int]
    days: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": UNIT,
            "steps": [
                {
                    "step": s,
                    "count": self.counts[s],
                    "rate": self.rates.get(s),
                    "rate_of": RATE_BASE.get(s),
                }
                for s in STEPS
            ],
            "time_to_install_seconds": self.time_to_install_seconds,
            "platforms": self.platforms,
            "days": self.days,
        }


def adoption_funnel(session: Session, provider: str | None, filters: Filters) -> Funnel:
    """The funnel over the passes the filters select, with its daily series."""
    known = _passes(session, provider, filters)
    passes = [p for p in known if p.issued]
    counts = {
        "known": len(known),
        "issued": len(passes),
        "downloaded": sum(p.downloaded for p in passes),
        "installed": sum(p.active_devices > 0 for p in passes),
        "used": sum(p.used_at is not None for p in passes),
        "removed": sum(p.removed for p in passes),
    }
    return Funnel(
        counts=counts,
        rates={step: _rate(counts[step], counts[base]) for step, base in RATE_BASE.items()},
        time_to_install_seconds=_time_to_install(passes),
        platforms=dict(
            sorted(Counter(p.platform or "unknown" for p in passes if p.downloaded).items())
        ),
        days=_days(passes),
    )


def _passes(session: Session, provider: str | None, filters: Filters) -> list[_Pass]:
    query: Any = (
        select(
            PassMapping.provider_pass_id.is_not(None),
            PassMapping.created_at,
            PassAdoption.platform,
            PassAdoption.active_devices,
            PassAdoption.installs,
            PassAdoption.removals,
            PassAdoption.first_installed_at,
            PassAdoption.removed_at,
            PassAdoption.used_at,
            PassUsage.first_used_at,
        )
        .outerjoin(PassAdoption, PassAdoption.provider_pass_id == PassMapping.provider_pass_id)
        .outerjoin(PassUsage, PassUsage.mapping_id == PassMapping.id)
    )
    if provider is not None:
        query = query.where(PassMapping.provider == provider)
    query = _filtered(query, filters)
    return [
        _Pass(
            issued=bool(row[0]),
            issued_at=row[1],
            platform=row[2],
            active_devices=row[3] or 0,
            installs=row[4] or 0,
            removals=row[5] or 0,
            first_installed_at=row[6],
            removed_at=row[7],
            used_at=_earliest(row[8], row[9]),
        )
        for row in session.execute(query)
    ]


def _filtered(query: Select[Any], filters: Filters) -> Select[Any]:
    if filters.template:
        query = query.where(
            or_(
                PassMapping.template_id == filters.template,
                PassAdoption.template == filters.template,
            )
        )
    if filters.pass_key:
        query = query.where(PassMapping.pass_key == filters.pass_key)
    if filters.platform:
        query = query.where(PassAdoption.platform == filters.platform)
    if filters.campaign is not None:
        query = query.where(PassMapping.customer_id.in_(_campaign_customers(filters.campaign)))
    if filters.since:
        query = query.where(PassMapping.created_at >= _start(filters.since))
    if filters.until:
        query = query.where(PassMapping.created_at < _start(filters.until, plus_days=1))
    return query


def _campaign_customers(campaign: int) -> Select[Any]:
    return select(CampaignRecipient.customer_id).where(CampaignRecipient.campaign_id == campaign)


def _start(day: date, plus_days: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=plus_days)


def _earliest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _rate(count: int, base: int) -> float | None:
    return round(count / base, 4) if base else None


def _time_to_install(passes: list[_Pass]) -> dict[str, float | None]:
    waits = [
        max(0.0, (p.first_installed_at - p.issued_at).total_seconds())
        for p in passes
        if p.first_installed_at is not None
    ]
    if not waits:
        return {"median": None, "mean": None}
    return {"median": statistics.median(waits), "mean": round(statistics.fmean(waits), 1)}


def _days(passes: list[_Pass]) -> list[dict[str, Any]]:
    """Per day: passes issued, first installed, removed, first used (adoption over time)."""
    series: dict[str, Counter[str]] = defaultdict(Counter)
    for p in passes:
        for step, at in (
            ("issued", p.issued_at),
            ("installed", p.first_installed_at),
            ("removed", p.removed_at if p.removed else None),
            ("used", p.used_at),
        ):
            if at is not None:
                series[at.date().isoformat()][step] += 1
    steps = ("issued", "installed", "used", "removed")
    return [{"day": day, **{s: series[day][s] for s in steps}} for day in sorted(series)]


def top_locations(
    session: Session, provider: str | None, filters: Filters | None = None, limit: int = 10
) -> list[tuple[str, int]]:
    """Locations by valid scans of the passes the filters select (of one account, or every
    account's for None), most first."""
    count = func.count(Scan.id)
    query: Any = (
        select(Scan.location, count)
        .join(PassMapping, PassMapping.id == Scan.mapping_id)
        .outerjoin(PassAdoption, PassAdoption.provider_pass_id == PassMapping.provider_pass_id)
        .where(Scan.status == ScanStatus.ACCEPTED, Scan.location.is_not(None))
    )
    if provider is not None:
        query = query.where(PassMapping.provider == provider)
    query = (
        _filtered(query, filters or Filters())
        .group_by(Scan.location)
        .order_by(count.desc(), Scan.location)
        .limit(limit)
    )
    return [(str(loc), int(n)) for loc, n in session.execute(query)]


def campaign_progress(
    session: Session, filters: Filters | None = None, limit: int = 10
) -> list[dict[str, Any]]:
    """The newest campaigns (or the one filtered on): recipients in total and done (a pass
    issued or already right), and each one's status, so a draft is not taken for a stall."""
    done = (RecipientState.DONE, RecipientState.SKIPPED)
    finished = func.count(CampaignRecipient.id).filter(CampaignRecipient.state.in_(done))
    query = (
        select(Campaign.id, Campaign.name, Campaign.status, Campaign.total, finished)
        .outerjoin(CampaignRecipient, CampaignRecipient.campaign_id == Campaign.id)
        .group_by(Campaign.id, Campaign.name, Campaign.status, Campaign.total)
        .order_by(Campaign.id.desc())
        .limit(limit)
    )
    if filters is not None and filters.campaign is not None:
        query = query.where(Campaign.id == filters.campaign)
    return [
        {"id": cid, "name": name, "status": status, "total": total, "done": int(n)}
        for cid, name, status, total, n in session.execute(query)
    ]


def adoption_report(session: Session, provider: str | None, filters: Filters) -> dict[str, Any]:
    """Everything the API, the CLI and the dashboard show, as JSON-ready data (`provider`:
    one account's passes, None: every account's)."""
    return {
        "filters": {
            k: (v.isoformat() if isinstance(v, date) else v) for k, v in vars(filters).items()
        },
        **adoption_funnel(session, provider, filters).as_dict(),
        "top_locations": [
            {"location": loc, "scans": n} for loc, n in top_locations(session, provider, filters)
        ],
        "campaigns": campaign_progress(session, filters),
        # What a campaign filter can choose from (the newest, whatever is filtered now).
        "campaign_choices": [
            {"id": c["id"], "name": c["name"], "status": c["status"]}
            for c in campaign_progress(session, limit=50)
        ],
    }
