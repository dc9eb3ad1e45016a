"""A long-lived process's audited clients (`passsync mcp`) follow a credential rotation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.accounts.conftest import ALL_SECRETS, Accounts
from worker.audit import AuditEntry
from worker.commands.audited import audited_client
from worker.config import load_settings
from worker.db import Database
from worker.migrate import upgrade
from worker.providers.credentials import CredentialRefusedError
from worker.providers.rotation import CredentialReloader


def test_an_audited_client_with_a_reloader_follows_a_rotation(
    accounts: Accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an MCP-style audited client whose key the provider refuses
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", url)
    monkeypatch.setenv("PASSSYNC_CREDENTIALS__RELOAD_CHECK_SECONDS", "0.01")
    accounts.write_secrets({**ALL_SECRETS, "PASSSYNC_PROVIDERS__BRAND_A__API_KEY": "revoked"})
    settings = load_settings()
    generation = [0]
    reloader = CredentialReloader(settings, read=lambda: generation[0])
    with audited_client(settings, "brand_a", reloader=reloader) as client:
        with pytest.raises(CredentialRefusedError):
            client.list_templates()
        # When the secrets file gets the right key and the rotation is announced
        accounts.write_secrets(ALL_SECRETS)
        generation[0] += 1
        time.sleep(0.05)
        # Then the same long-lived client works, without a restart
        assert [t.name for t in client.list_templates()][:1] == ["Loyalty Card"]
    database = Database(url)
    with database.sessions() as session:
        statuses = list(session.scalars(select(AuditEntry.status).order_by(AuditEntry.id)))
    database.dispose()
    assert statuses == [401, 200]
