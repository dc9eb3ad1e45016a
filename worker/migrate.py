"""Runs the Alembic migrations shipped in worker/migrations against a database URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (idempotent)."""
    command.upgrade(alembic_config(url), revision)


def head_revisions() -> set[str]:
    """The revisions the code expects (the shipped migrations' heads)."""
    return set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at (empty: never migrated)."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def revision_names(revisions: set[str]) -> str:
    """`0006_scans_adoption`-style names for people, or "an empty schema"."""
    if not revisions:
        return "an empty schema"
    script = ScriptDirectory(str(MIGRATIONS))
    names = []
    for rev in sorted(revisions):
        found = script.get_revision(rev)
        path = Path(found.path).stem if found is not None and found.path else rev
        names.append(path)
    return ", ".join(names)


def pending_count(current: set[str]) -> int:
    """How many shipped migrations the database at `current` still lacks."""
    script = ScriptDirectory(str(MIGRATIONS))
    applied: set[str] = set()
    for rev in current:
        applied.update(r.revision for r in script.iterate_revisions(rev, "base"))
    return sum(1 for r in script.walk_revisions() if r.revision not in applied)


def revision(url: str, message: str) -> None:
    """Autogenerate a new revision against `url` (a developer tool)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)
