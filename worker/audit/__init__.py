"""The audit trail of provider calls: actor context, recorder, queries and retention."""

from worker.audit.actor import SYSTEM, Actor, acting_as, current_actor
from worker.audit.models import AuditEntry
from worker.audit.queries import MAX_PAGE, AuditFilter, delete_expired, list_entries
from worker.audit.recorder import AuditRecorder
from worker.audit.store import purge_expired, retention_cutoff, write_entries

__all__ = [
    "MAX_PAGE",
    "SYSTEM",
    "Actor",
    "AuditEntry",
    "AuditFilter",
    "AuditRecorder",
    "acting_as",
    "current_actor",
    "delete_expired",
    "list_entries",
    "purge_expired",
    "retention_cutoff",
    "write_entries",
]
