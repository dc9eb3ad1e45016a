"""named provider accounts: pass mappings record their account's platform kind

Before named accounts the only account was named after its platform kind, and every row's
`provider` column (pass_mappings, audit_log, adoption_events, reconcile_cursors,
reconcile_drift) held that name: exactly the name of the account an upgraded install reads
from its unchanged config (`providers: {<kind>: {...}}`). So the column now holds the
account's name with no data change, and existing mappings get their kind from it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pass_mappings") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=32), nullable=True))
    op.execute("UPDATE pass_mappings SET kind = provider")


def downgrade() -> None:
    with op.batch_alter_table("pass_mappings") as batch:
        batch.drop_column("kind")
