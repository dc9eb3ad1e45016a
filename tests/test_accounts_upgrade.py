"""An install from before named accounts keeps working after `passsync db upgrade`.

The database is built as today's main built it (migrations up to 0006, rows written with the
platform's name in every `provider` column) and the config has today's shape
(`providers: {<kind>: {...}}` without `kind:`, the external-id prefix under it, a top-level
`sandbox:`). After the upgrade the same settings read one account named after that kind, its
rows are its rows, and the engine updates the existing pass instead of creating a twin.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from tests.conftest import PG_ADMIN_URL, need_service
from tests.sync.ledger_rows import store
from worker.adoption.reconcile import current_cursor
from worker.audit.models import AuditEntry
from worker.cli import app
from worker.config import load_settings
from worker.db import Database
from worker.inbound.schema import CanonicalEvent
from worker.migrate import upgrade
from worker.providers import registry
from worker.providers.memory import MemoryProvider, StoredPass
from worker.sync.engine import Outcome, SyncContext, process_event
from worker.sync.models import PassMapping
from worker.sync.templates import TemplateResolver

LEGACY = registry.default_kind()  # the only platform before named accounts
UPID = "acme-loyalty-cus_1"  # the external id today's code gave the pass (prefix "acme")
AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def legacy_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own, migrated only to 0006 (today's head)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    need_service("PostgreSQL", PG_ADMIN_URL)
    name = f"passsync_up_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def build_todays_database(url: str) -> None:
    """Schema 0006 and the rows today's code writes (raw SQL: no model of this change)."""
    upgrade(url, "0006")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO pass_mappings (provider, customer_id, pass_key, user_provided_id,"
                " provider_pass_id, template_id, status, content_hash, created_at, updated_at)"
                " VALUES (:p, 'cus_1', 'loyalty', :u, 'pass-1', 'tpl-loyalty', 'active',"
                " 'old-hash', :at, :at)"
            ),
            {"p": LEGACY, "u": UPID, "at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO audit_log (at, provider, action, method, path, pass_ref, status,"
                " duration_ms, attempt, outcome, actor_kind, actor_id) VALUES (:at, :p,"
                " 'create_pass', 'POST', '/api/v3/pass', :u, 200, 12.5, 1, 'ok', 'event', '1')"
            ),
            {"p": LEGACY, "u": UPID, "at": AT},
        )
        conn.execute(
            text(
                "INSERT INTO reconcile_cursors (provider, cursor, sweep, sweep_started_at,"
                " updated_at) VALUES (:p, '100', 3, :at, :at)"
            ),
            {"p": LEGACY, "at": AT},
        )
    engine.dispose()


def todays_config(path: Path) -> Path:
    path.write_text(
        f"providers:\n  {LEGACY}:\n    timeout_seconds: 7\n    user_provided_id_prefix: acme\n"
        "sandbox:\n  port: 8099\n"
    )
    return path


def test_a_database_and_config_from_before_keep_working_after_db_upgrade(
    legacy_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given today's database and today's config
    build_todays_database(legacy_url)
    monkeypatch.setenv("PASSSYNC_CONFIG", str(todays_config(tmp_path / "config.yaml")))
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", legacy_url)
    # When the operator runs `passsync db upgrade`
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    # Then the config reads as one account named after the platform, with its settings
    settings = load_settings()
    account = registry.account(settings)
    assert (account.name, account.kind.kind) == (LEGACY, LEGACY)
    assert list(settings.providers) == [LEGACY]
    assert getattr(account.settings, "timeout_seconds", None) == 7
    assert settings.sync.external_id_prefix == "acme"
    assert account.sandbox_settings.port == 8099
    db = Database(legacy_url)
    try:
        # And every row is that account's: nothing lost, the mapping knows its kind
        with db.sessions() as session:
            (row,) = session.scalars(select(PassMapping)).all()
            assert (row.provider, row.kind, row.user_provided_id) == (LEGACY, LEGACY, UPID)
            audited = session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.provider == LEGACY)
            )
            assert audited == 1
            assert current_cursor(session, LEGACY) == "100"
        # And the engine updates the existing pass under the same external id: no twin
        provider = MemoryProvider()
        provider.passes["pass-1"] = StoredPass("pass-1", UPID, "tpl-loyalty", {"tier": "silver"})
        ctx = SyncContext(settings, provider, TemplateResolver(provider))
        event = CanonicalEvent.model_validate(
            {
                "id": "evt-after-upgrade",
                "type": "customer.updated",
                "occurred_at": "2026-12-01T09:00:00+00:00",
                "customer": {"id": "cus_1", "first_name": "Ada", "attributes": {"tier": "gold"}},
            }
        )
        with db.session() as session:
            result = process_event(session, store(db, event), ctx)
        assert [p.outcome for p in result.passes] == [Outcome.UPDATED]
        assert provider.calls["create"] == 0
        assert [p.user_provided_id for p in provider.live()] == [UPID]
        assert provider.passes["pass-1"].fields["tier"] == "gold"
        with db.sessions() as session:
            assert session.scalar(select(func.count()).select_from(PassMapping)) == 1
    finally:
        db.dispose()


def test_the_upgrade_is_repeatable_and_reversible(legacy_url: str) -> None:
    from alembic import command

    from worker.migrate import alembic_config

    build_todays_database(legacy_url)
    upgrade(legacy_url)
    upgrade(legacy_url)  # a second `db upgrade` changes nothing
    command.downgrade(alembic_config(legacy_url), "0006")
    engine = create_engine(legacy_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT provider, user_provided_id FROM pass_mappings")).all() == [
            (LEGACY, UPID)
        ]
    engine.dispose()
