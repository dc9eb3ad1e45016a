"""One delivery run, in three steps like the sync engine: claim due deliveries in a short
transaction (committed), POST them with no transaction open, record the results in a second
short transaction. Repeats while deliveries are due, up to `max_rounds`."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from worker.config import OutboundSettings
from worker.db import Database, utcnow
from worker.observability import metrics
from worker.outbox.store import Claimed, SendResult, Verdict, claim_due, fan_out, record

log = logging.getLogger("passsync.outbox")


class Transport(Protocol):
    def send(self, claimed: Claimed) -> SendResult: ...


@dataclass
class RunResult:
    fanned_out: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    more: bool = False  # stopped after max_rounds with deliveries still due

    @property
    def attempts(self) -> int:
        return sum(self.verdicts.values())


def deliver_due(
    db: Database,
    settings: OutboundSettings,
    transport: Transport,
    *,
    now: Callable[[], datetime] = utcnow,
    rng: random.Random | None = None,
    max_rounds: int = 20,
) -> RunResult:
    """Fan new events out and deliver everything due; safe to run in many workers at once."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
    wanted = {name: frozenset(dest.event_types) for name, dest in settings.destinations.items()}
    result = RunResult()
    for _ in range(max_rounds):
        with db.session() as session:
            result.fanned_out += fan_out(session, wanted, now())
            claimed = claim_due(
                session,
                wanted,
                now=now(),
                lease_seconds=settings.lease_seconds,
                limit=settings.batch_size,
            )
        if not claimed:
            return result
        sent = _send_all(transport, claimed, settings.parallel)
        with db.session() as session:
            verdicts = [
                record(session, one, answer, settings, now=now(), rng=rng)
                for one, answer in zip(claimed, sent, strict=True)
            ]
        _report(claimed, sent, verdicts)
        metrics.outbox_delivered(verdicts)
        result.verdicts.update(verdicts)
    result.more = True
    return result


def _send_all(transport: Transport, claimed: list[Claimed], parallel: int) -> list[SendResult]:
    if len(claimed) == 1 or parallel == 1:
        return [transport.send(one) for one in claimed]
    with ThreadPoolExecutor(min(parallel, len(claimed))) as pool:
        return list(pool.map(transport.send, claimed))


def _report(claimed: list[Claimed], sent: list[SendResult], verdicts: list[str]) -> None:
    for one, answer, verdict in zip(claimed, sent, verdicts, strict=True):
        if verdict == Verdict.DISABLED:
            log.warning(
                "outbound destination %s answered 410 Gone and is disabled; "
                "`passsync outbox redeliver --destination %s` enables it again",
                one.destination,
                one.destination,
            )
        elif verdict in (Verdict.FAILED, Verdict.GAVE_UP):
            log.warning(
                "outbound event %s to %s %s after attempt %d (%s)",
                one.webhook_id,
                one.destination,
                "refused" if verdict == Verdict.FAILED else "given up",
                one.attempt,
                answer.error or f"HTTP {answer.status_code}",
            )
