"""retention: indexes that let the purge find old adoption callbacks and scans cheaply

The inbound ledger's purge uses ix_inbound_events_status_received_at and the outbox's
ix_outbox_events_fan_out; these two tables had no index on their age.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_adoption_events_received_at", "adoption_events", ["received_at"])
    op.create_index("ix_scans_status_received_at", "scans", ["status", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_scans_status_received_at", table_name="scans")
    op.drop_index("ix_adoption_events_received_at", table_name="adoption_events")
