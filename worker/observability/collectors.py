"""Scrape-time gauges the API's /metrics adds: read when Prometheus asks, never counted inline.

The ledger, outbox and campaign figures are a few indexed aggregate queries, so one scrape
costs the same whatever the traffic; the intake figures are the receiver's own counters
(no work at all on the webhook path). A failing source (database or broker down) drops its
gauges from that scrape and never fails the scrape itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from worker.campaigns.models import FINAL, Campaign, CampaignRecipient
from worker.db import Database, utcnow
from worker.inbound.models import EventStatus, InboundEvent
from worker.outbox.models import UNFINISHED, OutboxDelivery

log = logging.getLogger("passsync.metrics")


class IntakeCollector(Collector):
    """The receiver's group-commit queue: events waiting for a commit, requests refused."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Any]:
        stats = self._stats()
        yield GaugeMetricFamily(
            "passsync_intake_pending_events",
            "Events received by this API process and not yet committed.",
            value=stats.pending_events,
        )
        refused = CounterMetricFamily(
            "passsync_intake_refused",
            "Webhook requests answered 503 by this process, by reason.",
            labels=["reason"],
        )
        refused.add_metric(["overloaded"], stats.refused_overload)
        refused.add_metric(["database"], stats.refused_database)
        yield refused


class DatabaseCollector(Collector):
    """Ledger backlog, outbox backlog and age, live campaigns' progress."""

    def __init__(self, db: Database, now: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._now = now

    def collect(self) -> Iterable[Any]:
        try:
            with self._db.session() as session:
                ledger = dict(
                    session.execute(
                        select(InboundEvent.status, func.count())
                        .where(InboundEvent.status != EventStatus.HANDLED.value)
                        .group_by(InboundEvent.status)
                    ).all()
                )
                backlog, oldest = session.execute(
                    select(func.count(), func.min(OutboxDelivery.created_at)).where(
                        OutboxDelivery.status.in_(UNFINISHED)
                    )
                ).one()
                progress = session.execute(
                    select(CampaignRecipient.campaign_id, CampaignRecipient.state, func.count())
                    .join(Campaign, Campaign.id == CampaignRecipient.campaign_id)
                    .where(Campaign.status.not_in([s.value for s in FINAL]))
                    .group_by(CampaignRecipient.campaign_id, CampaignRecipient.state)
                ).all()
        except Exception as exc:
            log.warning("metrics: database figures unavailable (%s)", type(exc).__name__)
            return
        yield _ledger(ledger)
        yield GaugeMetricFamily(
            "passsync_outbox_backlog",
            "Outbound deliveries not yet finished (pending or being sent).",
            value=backlog,
        )
        age = 0.0 if oldest is None else max(0.0, (self._now() - oldest).total_seconds())
        yield GaugeMetricFamily(
            "passsync_outbox_oldest_age_seconds",
            "Age of the oldest outbound delivery still waiting (0 when none waits).",
            value=age,
        )
        family = GaugeMetricFamily(
            "passsync_campaign_recipients",
            "Recipients of campaigns not yet finished, by state.",
            labels=["campaign", "state"],
        )
        for campaign_id, state, count in progress:
            family.add_metric([str(campaign_id), str(state)], count)
        yield family


def _ledger(counts: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "passsync_ledger_events",
        "Ledger events not yet handled, by status (pending, failed = retry scheduled, dead).",
        labels=["status"],
    )
    for status in (EventStatus.PENDING, EventStatus.FAILED, EventStatus.DEAD):
        family.add_metric([status.value], counts.get(status.value, 0))
    return family


class BrokerCollector(Collector):
    """Messages waiting in each broker queue (`depths` asks the broker)."""

    def __init__(self, depths: Callable[[], Mapping[str, int]]) -> None:
        self._depths = depths

    def collect(self) -> Iterable[Any]:
        try:
            depths = self._depths()
        except Exception as exc:
            log.warning("metrics: broker depth unavailable (%s)", type(exc).__name__)
            return
        family = GaugeMetricFamily(
            "passsync_broker_queue_depth",
            "Messages waiting in the broker, by queue.",
            labels=["queue"],
        )
        for queue, depth in sorted(depths.items()):
            family.add_metric([queue], depth)
        yield family
