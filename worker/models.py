"""Imports every model module so Base.metadata knows all tables (for Alembic and tests)."""

from worker.adoption.models import AdoptionEvent, Drift, PassAdoption, ReconcileCursor
from worker.audit.models import AuditEntry
from worker.campaigns.models import Campaign, CampaignImportError, CampaignRecipient
from worker.inbound.models import InboundEvent
from worker.outbox.models import OutboxAttempt, OutboxDelivery, OutboxDestination, OutboxEvent
from worker.scans.models import PassUsage, Scan
from worker.sync.models import PassMapping

__all__ = [
    "AdoptionEvent",
    "AuditEntry",
    "Campaign",
    "CampaignImportError",
    "CampaignRecipient",
    "Drift",
    "InboundEvent",
    "OutboxAttempt",
    "OutboxDelivery",
    "OutboxDestination",
    "OutboxEvent",
    "PassAdoption",
    "PassMapping",
    "PassUsage",
    "ReconcileCursor",
    "Scan",
]
