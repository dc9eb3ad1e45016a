"""Live success rates per account and action, from the audit log (inside the caller's session).

One row per (account, action): attempts, the share that succeeded, the error classes (the
audit outcome of every failed attempt) and p50/p99 latency. An attempt succeeded when the
provider answered it as asked (`ok`) or with the answer the caller wanted to hear
(`already_exists`: the engine adopts the existing pass). Percentiles are computed by Postgres
(`percentile_cont`); on SQLite, whose log is small, in Python.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from worker.audit.models import AuditEntry
from worker.db import utcnow

SUCCESS = ("ok", "already_exists")
DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass
class ActionStats:
    account: str
    action: str
    calls: int = 0
    succeeded: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        return None if not self.calls else self.succeeded / self.calls

    def as_dict(self) -> dict[str, object]:
        rate = self.success_rate
        return {
            "account": self.account,
            "action": self.action,
            "calls": self.calls,
            "success_rate": None if rate is None else round(rate, 6),
            "errors": dict(sorted(self.errors.items())),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        }


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`24h`, `7d`, `30m`, `90s` before now, or an ISO time (UTC if naive); ValueError else."""
    match = DURATION.match(value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return (now or utcnow()) - timedelta(**{UNITS[unit]: amount})
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def call_stats(
    session: Session, *, since: datetime, account: str | None = None
) -> list[ActionStats]:
    """Per account and action since `since`, ordered by account then action."""
    rows: dict[tuple[str, str], ActionStats] = {}
    counts = (
        select(AuditEntry.provider, AuditEntry.action, AuditEntry.outcome, func.count())
        .where(*_where(since, account))
        .group_by(AuditEntry.provider, AuditEntry.action, AuditEntry.outcome)
    )
    for provider, action, outcome, count in session.execute(counts):
        stats = rows.setdefault((provider, action), ActionStats(provider, action))
        stats.calls += count
        if outcome in SUCCESS:
            stats.succeeded += count
        else:
            stats.errors[outcome] = stats.errors.get(outcome, 0) + count
    for key, (p50, p99) in _percentiles(session, since, account).items():
        if key in rows:
            rows[key].p50_ms, rows[key].p99_ms = p50, p99
    return [rows[key] for key in sorted(rows)]


def _where(since: datetime, account: str | None) -> list[ColumnElement[bool]]:
    conditions = [AuditEntry.at >= since]
    if account is not None:
        conditions.append(AuditEntry.provider == account)
    return conditions


def _percentiles(
    session: Session, since: datetime, account: str | None
) -> dict[tuple[str, str], tuple[float, float]]:
    keys = (AuditEntry.provider, AuditEntry.action)
    if session.get_bind().dialect.name == "postgresql":
        query = (
            select(
                *keys,
                func.percentile_cont(0.5).within_group(AuditEntry.duration_ms),
                func.percentile_cont(0.99).within_group(AuditEntry.duration_ms),
            )
            .where(*_where(since, account))
            .group_by(*keys)
        )
        return {
            (p, a): (round(float(p50), 3), round(float(p99), 3))
            for p, a, p50, p99 in session.execute(query)
        }
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    rows = select(*keys, AuditEntry.duration_ms).where(*_where(since, account))
    for provider, action, ms in session.execute(rows):
        durations[(provider, action)].append(float(ms))
    return {key: (_quantile(v, 0.5), _quantile(v, 0.99)) for key, v in durations.items()}


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks, as Postgres' percentile_cont."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), 3)
