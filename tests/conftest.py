"""Shared fixtures: both database backends, real Redis, settings built for a test.

Services: a test that needs Postgres or Redis skips when the service is absent on a
developer's machine, and fails instead when CI=true or PASSSYNC_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

from worker.config import Settings, load_settings
from worker.db import Base, Database
from worker.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "PASSSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("PASSSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def services_required() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get(
        "PASSSYNC_REQUIRE_SERVICES", ""
    ) in ("1", "true")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


DEFAULT_PORTS = {"postgresql": 5432, "redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671}


def service_address(url: str) -> tuple[str, int]:
    """The host and port a service URL points at (the scheme's default port when none)."""
    where = urlsplit(url)
    scheme = where.scheme.split("+", 1)[0]
    return where.hostname or "127.0.0.1", where.port or DEFAULT_PORTS[scheme]


def need_service(name: str, url_or_host: str, port: int | None = None) -> None:
    """Skip (or fail, when services are required) unless the service answers where the test
    will really connect: give its URL (`need_service("Redis", REDIS_TEST_URL)`), or a host
    and port."""
    host, port = service_address(url_or_host) if port is None else (url_or_host, port)
    if _port_open(host, port):
        return
    message = f"{name} is not running on {host}:{port}"
    if services_required():
        pytest.fail(message + " (required in CI)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's config.yaml or PASSSYNC_ variables by accident."""
    for key in list(os.environ):
        if key.startswith("PASSSYNC_") and not key.startswith("PASSSYNC_TEST_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PASSSYNC_CONFIG", str(tmp_path / "absent-config.yaml"))
    (tmp_path / "absent-config.yaml").write_text("{}\n")


CLI_ADMIN_TOKEN = "cli-admin-token-for-tests-0123"


@pytest.fixture
def cli_admin_token(monkeypatch: pytest.MonkeyPatch) -> str:
    """An admin token with the write scope, configured and exported as PASSSYNC_TOKEN: what
    every CLI command that changes state asks for."""
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__CLI__SECRET", CLI_ADMIN_TOKEN)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__CLI__SCOPES", '["read", "write"]')
    monkeypatch.setenv("PASSSYNC_TOKEN", CLI_ADMIN_TOKEN)
    return CLI_ADMIN_TOKEN


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh Postgres database for this test session, migrated to head."""
    need_service("PostgreSQL", PG_ADMIN_URL)
    name = f"passsync_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(database: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as conn:
        if database.is_sqlite:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
        else:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'passsync.db'}"
        upgrade(url)
        yield url
    else:
        url = request.getfixturevalue("pg_url")
        cleaner = Database(url, pool_size=1)
        _truncate(cleaner)
        yield url
        cleaner.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The machine's Redis, on a test database index that is flushed before and after."""
    need_service("Redis", REDIS_TEST_URL)
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: data under tmp_path, any field overridable by keyword."""

    def build(**overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("database_url", f"sqlite:///{tmp_path / 'settings.db'}")
        return load_settings(**overrides)

    return build
