"""The fault suite's harness: real worker processes against each registered platform's sandbox.

Every kind whose descriptor has a sandbox joins automatically (the `fault_kind` parameter):
its sandbox runs in this process, one account named after the kind points at it, and the
scenarios drive it only through the neutral RunningSandbox API (configure, stats, state,
reset). Each scenario runs on SQLite with the embedded Redis and on Postgres with Redis.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tasks.conftest import _clean
from tests.tasks.harness import SECRET, Harness
from worker.brokers import EmbeddedRedis
from worker.config import load_settings
from worker.db import Database
from worker.migrate import upgrade
from worker.providers import registry
from worker.providers.port import RunningSandbox
from worker.tasks.app import configure
from worker.tasks.runtime import reset_runtime

# A swept event is stale after this many seconds; short, so a flushed broker costs little.
SWEEP_STALE_AFTER_SECONDS = 2
# Longer than any provider call here (40 ms latency, client retries included).
CLAIM_SECONDS = 5
KINDS_WITH_SANDBOX = [k for k in registry.kinds() if registry.get_kind(k).sandbox is not None]


@pytest.fixture(autouse=True)
def _fast_sweeper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set before `harness` reads the environment (autouse fixtures come first)."""
    monkeypatch.setenv("PASSSYNC_SYNC__SWEEP_INTERVAL_SECONDS", "1")
    monkeypatch.setenv("PASSSYNC_SYNC__SWEEP_STALE_AFTER_SECONDS", str(SWEEP_STALE_AFTER_SECONDS))
    # A SIGKILLed worker's passes are claimed until this lease lapses (default 10 s).
    monkeypatch.setenv("PASSSYNC_SYNC__CLAIM_SECONDS", str(CLAIM_SECONDS))


@pytest.fixture(scope="session", params=KINDS_WITH_SANDBOX)
def fault_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def _kind_sandbox(fault_kind: str) -> Iterator[RunningSandbox]:
    kit = registry.get_kind(fault_kind).sandbox
    assert kit is not None
    with kit.running(kit.settings_model(host="127.0.0.1", port=0)) as handle:
        yield handle


@pytest.fixture
def sandbox(_kind_sandbox: RunningSandbox) -> RunningSandbox:
    _kind_sandbox.reset()
    return _kind_sandbox


def account_env(kind: str, sandbox: RunningSandbox) -> dict[str, str]:
    """One account named after the kind, pointed at the sandbox, with quick client retries."""
    prefix = f"PASSSYNC_PROVIDERS__{kind.upper()}__"
    env = {prefix + "KIND": kind, "PASSSYNC_SYNC__DEFAULT_ACCOUNT": kind}
    env |= {prefix + key.upper(): value for key, value in sandbox.account_overrides().items()}
    fields = registry.settings_model(kind).model_fields
    for name, value in (("backoff_seconds", "0.05"), ("backoff_max_seconds", "0.5")):
        if name in fields:
            env[prefix + name.upper()] = value
    return env


@pytest.fixture(params=["sqlite+embedded-redis", "postgres+redis"])
def harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fault_kind: str,
    sandbox: RunningSandbox,
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
    env: dict[str, Any] = {
        "PASSSYNC_DATABASE_URL": db_url,
        "PASSSYNC_BROKER_URL": broker_url,
        "PASSSYNC_DATA_DIR": str(tmp_path / "data"),
        "PASSSYNC_SOURCES__CRM__SECRET": SECRET,
        "PASSSYNC_CELERY__VISIBILITY_TIMEOUT_SECONDS": "10",
        "PASSSYNC_CELERY__UNACKED_RESTORE_INTERVAL_SECONDS": "1",
        "PASSSYNC_SYNC__RETRY_BASE_SECONDS": "0.2",
        "PASSSYNC_SYNC__RETRY_MAX_SECONDS": "2",
        # The sandbox here has no rate limit; a key prefix of its own keeps this test's
        # budget apart from any other run on the same Redis.
        "PASSSYNC_RATELIMIT__PER_MINUTE": "60000",
        "PASSSYNC_RATELIMIT__BURST": "100",
        "PASSSYNC_RATELIMIT__KEY_PREFIX": f"passsync:ratelimit:{uuid.uuid4().hex[:8]}",
        **account_env(fault_kind, sandbox),
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
        env=dict(os.environ),
        settings=settings,
        db=db,
        sandbox=sandbox,  # type: ignore[arg-type]  # any kind's RunningSandbox
        workdir=tmp_path,
    )
    try:
        yield harness
    finally:
        harness.stop_all()
        reset_runtime()
        db.dispose()
        if embedded is not None:
            embedded.stop()
