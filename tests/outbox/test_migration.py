"""Migration 0005 follows 0004, creates the outbox tables and takes them away again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from worker.migrate import alembic_config, upgrade

OUTBOX_TABLES = {"outbox_events", "outbox_deliveries", "outbox_attempts", "outbox_destinations"}


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0005_upgrades_from_0004_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0004")
    assert not tables(url) & OUTBOX_TABLES
    upgrade(url, "0005")
    assert tables(url) >= OUTBOX_TABLES | {"campaigns", "pass_mappings"}
    command.downgrade(alembic_config(url), "0004")
    assert not tables(url) & OUTBOX_TABLES
    assert "campaigns" in tables(url)
