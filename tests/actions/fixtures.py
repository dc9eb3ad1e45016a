"""Fixtures for the CLI and MCP tests: a sandbox, a migrated audit database, the environment.

Test modules import them by name (`from tests.actions.fixtures import ...`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import delete, select

from worker.audit import AuditEntry
from worker.db import Database
from worker.migrate import upgrade
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.sandbox.store import template_id_for
from worker.providers.passcreator.settings import SandboxSettings

SANDBOX_KEY = "sandbox-actions-key-91c2"
LOYALTY = template_id_for("Loyalty Card")


@dataclass(frozen=True)
class Provider:
    """The running sandbox and the database the audit rows go to."""

    sandbox: SandboxHandle
    database_url: str

    def env(self) -> dict[str, str]:
        """The environment that points passsync at this sandbox and database."""
        return {
            "PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL": self.sandbox.base_url,
            "PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY": SANDBOX_KEY,
            "PASSSYNC_DATABASE_URL": self.database_url,
        }

    def audit(self) -> list[tuple[str, str, str, str | None]]:
        """(action, actor, outcome, pass_ref) of every audit row, oldest first."""
        database = Database(self.database_url, pool_size=1)
        try:
            with database.sessions() as session:
                rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
                return [
                    (r.action, f"{r.actor_kind}:{r.actor_id}", r.outcome, r.pass_ref) for r in rows
                ]
        finally:
            database.dispose()

    def clear_audit(self) -> None:
        database = Database(self.database_url, pool_size=1)
        try:
            with database.engine.begin() as conn:
                conn.execute(delete(AuditEntry))
        finally:
            database.dispose()


@pytest.fixture(scope="session")
def _actions_sandbox() -> Iterator[SandboxHandle]:
    settings = SandboxSettings(host="127.0.0.1", port=0, api_key=SecretStr(SANDBOX_KEY))
    with running_sandbox(settings) as handle:
        yield handle


@pytest.fixture(scope="session")
def _actions_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('actions') / 'audit.db'}"
    upgrade(url)
    return url


@pytest.fixture
def provider(
    _actions_sandbox: SandboxHandle, _actions_db: str, monkeypatch: pytest.MonkeyPatch
) -> Provider:
    """An empty sandbox, an empty audit log, and PASSSYNC_ variables pointing at both."""
    _actions_sandbox.reset()
    found = Provider(_actions_sandbox, _actions_db)
    found.clear_audit()
    for key, value in found.env().items():
        monkeypatch.setenv(key, value)
    return found


def unmigrated_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'empty.db'}"
