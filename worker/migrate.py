"""Runs the Alembic migrations shipped in worker/migrations against a database URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (idempotent)."""
    command.upgrade(alembic_config(url), revision)


def revision(url: str, message: str) -> None:
    """Autogenerate a new revision against `url` (a developer tool)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)
