"""scans, pass usage, adoption ledger, pass adoption, reconciliation

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import worker.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = worker.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    _scans()
    _pass_usage()
    _adoption_events()
    _pass_adoption()
    _reconcile()


def downgrade() -> None:
    for table in (
        "reconcile_drift",
        "reconcile_cursors",
        "pass_adoption",
        "adoption_events",
        "pass_usage",
        "scans",
    ):
        op.drop_table(table)


def _scans() -> None:
    op.create_table(
        "scans",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("scan_id", sa.String(length=255), nullable=False),
        sa.Column("scanned_at", UTC, nullable=False),
        sa.Column("barcode", sa.String(length=255), nullable=True),
        sa.Column("provider_pass_id", sa.String(length=255), nullable=True),
        sa.Column("customer_id", sa.String(length=255), nullable=True),
        sa.Column("pass_key", sa.String(length=64), nullable=True),
        sa.Column("location", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("mapping_id", ID, nullable=True),
        sa.Column("effect", JSON, nullable=True),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("handled_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
        sa.UniqueConstraint("source", "scan_id", name="uq_scans_source_scan_id"),
    )
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.create_index("ix_scans_status", ["status", "id"])
        batch_op.create_index("ix_scans_mapping_id", ["mapping_id"])


def _pass_usage() -> None:
    op.create_table(
        "pass_usage",
        sa.Column("mapping_id", ID, autoincrement=False, nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("redeemed_scan_id", ID, nullable=True),
        sa.Column("first_used_at", UTC, nullable=True),
        sa.Column("last_used_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("mapping_id", name=op.f("pk_pass_usage")),
    )


def _adoption_events() -> None:
    op.create_table(
        "adoption_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("callback_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("provider_pass_id", sa.String(length=255), nullable=True),
        sa.Column("platform", sa.String(length=32), nullable=True),
        sa.Column("occurred_at", UTC, nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("received_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adoption_events")),
        sa.UniqueConstraint("provider", "callback_id", name="uq_adoption_events_provider_callback"),
    )
    with op.batch_alter_table("adoption_events", schema=None) as batch_op:
        batch_op.create_index("ix_adoption_events_pass", ["provider_pass_id", "id"])


def _pass_adoption() -> None:
    op.create_table(
        "pass_adoption",
        sa.Column("provider_pass_id", sa.String(length=255), nullable=False),
        sa.Column("barcode", sa.String(length=255), nullable=True),
        sa.Column("template", sa.String(length=255), nullable=True),
        sa.Column("platform", sa.String(length=32), nullable=True),
        sa.Column("active_devices", sa.Integer(), nullable=False),
        sa.Column("installs", sa.Integer(), nullable=False),
        sa.Column("removals", sa.Integer(), nullable=False),
        sa.Column("first_installed_at", UTC, nullable=True),
        sa.Column("removed_at", UTC, nullable=True),
        sa.Column("voided_at", UTC, nullable=True),
        sa.Column("used_at", UTC, nullable=True),
        sa.Column("seen_sweep", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("provider_pass_id", name=op.f("pk_pass_adoption")),
    )
    with op.batch_alter_table("pass_adoption", schema=None) as batch_op:
        batch_op.create_index("ix_pass_adoption_barcode", ["barcode"])


def _reconcile() -> None:
    op.create_table(
        "reconcile_cursors",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("sweep", sa.Integer(), nullable=False),
        sa.Column("sweep_started_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_reconcile_cursors")),
    )
    op.create_table(
        "reconcile_drift",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("provider_pass_id", sa.String(length=255), nullable=True),
        sa.Column("mapping_id", ID, nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("found_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_drift")),
    )
    with op.batch_alter_table("reconcile_drift", schema=None) as batch_op:
        batch_op.create_index("ix_reconcile_drift_found", ["found_at"])
