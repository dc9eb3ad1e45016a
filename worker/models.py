"""Imports every model module so Base.metadata knows all tables (for Alembic and tests)."""

from worker.audit.models import AuditEntry
from worker.inbound.models import InboundEvent
from worker.sync.models import PassMapping

__all__ = ["AuditEntry", "InboundEvent", "PassMapping"]
