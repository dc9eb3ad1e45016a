"""Alembic environment: the URL comes from the caller (worker.migrate), never from a file."""

from __future__ import annotations

from alembic import context

import worker.models  # noqa: F401  (registers every table on Base.metadata)
from worker.db import Base, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("worker.migrate sets sqlalchemy.url")

engine = make_engine(url, pool_size=1)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
