"""pass claims, dead letter, coalescing and sweeper bookkeeping

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import worker.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEDGER_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enqueued_at", worker.db.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("sweeps", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("coalesced_into", LEDGER_ID, nullable=True))
    with op.batch_alter_table("pass_mappings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("claim_expires_at", worker.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("unconfirmed_since", worker.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pass_mappings", schema=None) as batch_op:
        for name in ("unconfirmed_since", "claim_expires_at", "claim_token"):
            batch_op.drop_column(name)
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        for name in ("coalesced_into", "sweeps", "enqueued_at"):
            batch_op.drop_column(name)
