"""outbox: outbound events, deliveries, delivery attempts, destination state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import worker.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = worker.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    _events()
    _deliveries()
    _attempts()
    op.create_table(
        "outbox_destinations",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("disabled_at", UTC, nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_destinations")),
    )


def _events() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("cause", sa.String(length=128), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("fanned_out_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("webhook_id", name=op.f("uq_outbox_events_webhook_id")),
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_events_fan_out", ["fanned_out_at", "id"])
        batch_op.create_index("ix_outbox_events_customer_id", ["customer_id", "id"])


def _deliveries() -> None:
    op.create_table(
        "outbox_deliveries",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("outbox_event_id", ID, nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("claim_token", sa.String(length=36), nullable=True),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("delivered_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["outbox_event_id"],
            ["outbox_events.id"],
            name=op.f("fk_outbox_deliveries_outbox_event_id_outbox_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_deliveries")),
        sa.UniqueConstraint(
            "outbox_event_id", "destination", name="uq_outbox_deliveries_event_dest"
        ),
    )
    with op.batch_alter_table("outbox_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_deliveries_due", ["status", "next_attempt_at"])
        batch_op.create_index(
            "ix_outbox_deliveries_order", ["destination", "customer_id", "outbox_event_id"]
        )


def _attempts() -> None:
    op.create_table(
        "outbox_attempts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("delivery_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["outbox_deliveries.id"],
            name=op.f("fk_outbox_attempts_delivery_id_outbox_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_attempts")),
    )
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_attempts_delivery_id", ["delivery_id", "id"])


def downgrade() -> None:
    op.drop_table("outbox_attempts")
    op.drop_table("outbox_deliveries")
    op.drop_table("outbox_destinations")
    op.drop_table("outbox_events")
