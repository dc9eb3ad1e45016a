"""campaigns, campaign recipients and import errors

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import worker.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = worker.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("rule", sa.String(length=255), nullable=True),
        sa.Column("template", sa.String(length=255), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("starts_at", UTC, nullable=True),
        sa.Column("ends_at", UTC, nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("import_errors", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("report", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_table(
        "campaign_recipients",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("chunk", sa.String(length=32), nullable=True),
        sa.Column("ledger_id", ID, nullable=True),
        sa.Column("outcome", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("calls", sa.Integer(), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_recipients_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_recipients")),
        sa.UniqueConstraint("campaign_id", "customer_id", name="uq_campaign_recipients_customer"),
    )
    with op.batch_alter_table("campaign_recipients", schema=None) as batch_op:
        batch_op.create_index("ix_campaign_recipients_state", ["campaign_id", "state", "id"])
        batch_op.create_index("ix_campaign_recipients_chunk", ["campaign_id", "chunk"])
        batch_op.create_index("ix_campaign_recipients_finished", ["campaign_id", "finished_at"])
    op.create_table(
        "campaign_import_errors",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_import_errors_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_import_errors")),
    )
    with op.batch_alter_table("campaign_import_errors", schema=None) as batch_op:
        batch_op.create_index("ix_campaign_import_errors_campaign", ["campaign_id", "line"])


def downgrade() -> None:
    op.drop_table("campaign_import_errors")
    op.drop_table("campaign_recipients")
    op.drop_table("campaigns")
