"""GET /api/accounts: read scope, each account described and checked (cached), a rotation
seen at the next request, never a secret in the answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from fastapi.testclient import TestClient

from tests.accounts.conftest import ALL_SECRETS, PC_KEY, PK_KEY, PK_SECRET, Accounts
from tests.conftest import REDIS_TEST_URL, need_service
from worker.api.app import create_app
from worker.config import load_settings
from worker.db import Database
from worker.migrate import upgrade
from worker.providers.passcreator.sandbox.server import SandboxHandle

READ = "accounts-read-token-0123456789"
WRITE_ONLY = "accounts-write-token-0123456789"
GENERATION_KEY = "test:api-accounts:generation"


@pytest.fixture
def client(
    accounts: Accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    where = urlsplit(REDIS_TEST_URL)
    need_service("Redis", where.hostname or "127.0.0.1", where.port or 6379)
    redis.Redis.from_url(REDIS_TEST_URL).delete(GENERATION_KEY)
    monkeypatch.setenv("PASSSYNC_BROKER_URL", REDIS_TEST_URL)
    monkeypatch.setenv("PASSSYNC_CREDENTIALS__GENERATION_KEY", GENERATION_KEY)
    monkeypatch.setenv("PASSSYNC_CREDENTIALS__RELOAD_CHECK_SECONDS", "0.01")
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__VIEWER__SECRET", READ)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__PUSHER__SECRET", WRITE_ONLY)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__PUSHER__SCOPES", '["write"]')
    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    db = Database(url)
    settings = load_settings()
    with TestClient(create_app(settings, db, lambda ids: None, lambda: None)) as test_client:
        yield test_client
    db.dispose()


def _get(client: TestClient, token: str = READ, **params: str) -> list[dict[str, object]]:
    answer = client.get(
        "/api/accounts", params=params, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    for secret in (PC_KEY, PK_KEY, PK_SECRET):
        assert secret not in answer.text
    accounts: list[dict[str, object]] = answer.json()["accounts"]
    return accounts


def _template_lists(sandbox: SandboxHandle) -> int:
    return int(sandbox.stats()["calls"].get("GET /api/pass-template", 0))


def test_without_a_token_401_and_without_the_read_scope_403(client: TestClient) -> None:
    assert client.get("/api/accounts").status_code == 401
    answer = client.get("/api/accounts", headers={"Authorization": f"Bearer {WRITE_ONLY}"})
    assert answer.status_code == 403


def test_every_account_is_described_and_checked(client: TestClient) -> None:
    accounts = _get(client)
    shown = [{k: v for k, v in a.items() if k != "checked_at"} for a in accounts]
    assert shown == [
        {
            "name": "brand_a",
            "kind": "passcreator",
            "title": "Passcreator",
            "auth_scheme": "api_key",
            "region": None,
            "source": "file",
            "has_credentials": True,
            "token_expires_at": None,
            "status": "ok",
            "detail": "credential accepted",
        },
        {
            "name": "brand_b",
            "kind": "passkit",
            "title": "PassKit",
            "auth_scheme": "jwt",
            "region": "pub2",
            "source": "file",
            "has_credentials": True,
            "token_expires_at": None,
            "status": "ok",
            "detail": "credential accepted",
        },
    ]
    assert all(isinstance(a["checked_at"], str) for a in accounts)


def test_checks_are_cached_and_refresh_checks_again(
    client: TestClient, pc_sandbox: SandboxHandle
) -> None:
    before = _template_lists(pc_sandbox)
    _get(client)
    _get(client)
    assert _template_lists(pc_sandbox) == before + 1
    _get(client, refresh="true")
    assert _template_lists(pc_sandbox) == before + 2


def test_a_rotation_is_seen_at_the_next_request(client: TestClient, accounts: Accounts) -> None:
    # Given the API reports both accounts ok
    assert [a["status"] for a in _get(client)] == ["ok", "ok"]
    # When brand_a's key in the secrets file is replaced by a wrong one and rotated
    accounts.write_secrets({**ALL_SECRETS, "PASSSYNC_PROVIDERS__BRAND_A__API_KEY": "revoked"})
    redis.Redis.from_url(REDIS_TEST_URL).incr(GENERATION_KEY)
    # Then the next answer checks brand_a again (refused) and keeps brand_b's check
    found = {a["name"]: a["status"] for a in _get(client)}
    assert found == {"brand_a": "refused", "brand_b": "ok"}
    # And /readyz sees the rotation too
    ready = client.get("/readyz").json()
    assert ready["provider"] == "provider refused the API key (account 'brand_a')"
