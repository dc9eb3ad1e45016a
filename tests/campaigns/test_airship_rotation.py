"""An Airship OAuth2 client secret rotated during a campaign, with real `passsync worker` and
`passsync beat` processes, Postgres, Redis and the Airship sandbox: Airship revokes the old
secret (and its tokens), the secrets file gets the new one, `passsync accounts rotate` tells
the fleet -> nothing lost, no 401 storm, a handful of new tokens, no secret in any log."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select, text

from tests.campaigns.test_campaign_processes import FLEET_REDIS_URL, Fleet
from tests.conftest import need_service
from tests.tasks.harness import SECRET
from worker.campaigns.models import CampaignRecipient
from worker.config import load_settings
from worker.db import Base, Database
from worker.inbound.models import InboundEvent
from worker.providers.airship.sandbox.app import create_sandbox_app
from worker.providers.airship.sandbox.server import SandboxHandle, attach
from worker.providers.airship.settings import AirshipSandboxSettings
from worker.providers.common.sandbox import running_app
from worker.tasks.app import configure
from worker.tasks.runtime import reset_runtime

pytestmark = pytest.mark.slow
RECIPIENTS = 160
OLD_SECRET = "airship-old-client-secret-5c1e"
NEW_SECRET = "airship-new-client-secret-9a7d"
# Refused token requests and calls allowed in all: about one per pool process while Airship
# already wants the new secret and the processes do not have it yet (a storm: hundreds).
MAX_REFUSED = 12


class Rotatable:
    """The Airship sandbox in a thread whose accepted client secret can be switched."""

    def __init__(self, app: Any, handle: SandboxHandle) -> None:
        self.app = app
        self.handle = handle

    def accept_only(self, secret: str) -> None:
        api = self.app.state.sandbox
        api._client = (api._client[0], secret)
        api.store.revoke_all()  # revoking a secret ends its tokens


@pytest.fixture(scope="module")
def airship() -> Iterator[Rotatable]:
    settings = AirshipSandboxSettings(host="127.0.0.1", port=0)
    app = create_sandbox_app(settings)
    with running_app(app, settings.host, 0, name="Airship sandbox") as url:
        yield Rotatable(app, attach(url, settings))


@pytest.fixture
def fleet(
    pg_url: str, airship: Rotatable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet]:
    need_service("Redis", "127.0.0.1", 6379)
    client = redis.Redis.from_url(FLEET_REDIS_URL)
    client.flushdb()
    airship.handle.reset()
    airship.accept_only(OLD_SECRET)
    base = airship.handle.base_url
    account = "PASSSYNC_PROVIDERS__AIRSHIP__"
    secrets = tmp_path / "secrets.env"
    _write_secrets(secrets, airship.handle.client_id, OLD_SECRET)
    env = {
        "PASSSYNC_DATABASE_URL": pg_url,
        "PASSSYNC_BROKER_URL": FLEET_REDIS_URL,
        "PASSSYNC_DATA_DIR": str(tmp_path / "data"),
        "PASSSYNC_SOURCES__CRM__SECRET": SECRET,
        "PASSSYNC_CREDENTIALS__SECRETS_FILE": str(secrets),
        # `accounts rotate` changes every process: it needs a token with the write scope.
        "PASSSYNC_ADMIN_TOKENS__OPS__SECRET": "airship-rotation-ops-token-0123",
        "PASSSYNC_ADMIN_TOKENS__OPS__SCOPES": '["read", "write"]',
        "PASSSYNC_TOKEN": "airship-rotation-ops-token-0123",
        "PASSSYNC_CREDENTIALS__RELOAD_CHECK_SECONDS": "1",
        "PASSSYNC_CREDENTIALS__GENERATION_KEY": f"test:credentials:{tmp_path.name}",
        "PASSSYNC_SYNC__DEFAULT_ACCOUNT": "airship",
        f"{account}KIND": "airship",
        f"{account}AUTH": "oauth2",
        f"{account}BASE_URL": f"{base}/v1",
        f"{account}TOKEN_URL": f"{base}/token",
        f"{account}BACKOFF_SECONDS": "0.05",
        "PASSSYNC_CELERY__VISIBILITY_TIMEOUT_SECONDS": "10",
        "PASSSYNC_CELERY__UNACKED_RESTORE_INTERVAL_SECONDS": "1",
        "PASSSYNC_SYNC__RETRY_BASE_SECONDS": "0.2",
        "PASSSYNC_SYNC__RETRY_MAX_SECONDS": "2",
        "PASSSYNC_SYNC__CLAIM_SECONDS": "3",
        "PASSSYNC_SYNC__COALESCE_WINDOW_MS": "0",
        "PASSSYNC_RATELIMIT__PER_MINUTE": "1200",
        "PASSSYNC_RATELIMIT__KEY_PREFIX": f"test:rl:{tmp_path.name}",
        "PASSSYNC_CAMPAIGNS__CHUNK_SIZE": "10",
        "PASSSYNC_CAMPAIGNS__MAX_QUEUED_CHUNKS": "3",
        "PASSSYNC_CAMPAIGNS__TICK_SECONDS": "0.5",
        "PASSSYNC_CAMPAIGNS__REQUEUE_AFTER_SECONDS": "4",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    configure(settings)
    reset_runtime()
    db = Database(pg_url)
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    fleet = Fleet(dict(os.environ), settings, db, airship.handle, tmp_path)  # type: ignore[arg-type]
    try:
        yield fleet
    finally:
        fleet.stop()
        reset_runtime()
        db.dispose()
        client.flushdb()
        client.close()


def _write_secrets(path: Path, client_id: str, secret: str) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_text(
        f"PASSSYNC_PROVIDERS__AIRSHIP__API_KEY={client_id}\n"
        f"PASSSYNC_PROVIDERS__AIRSHIP__SECRET={secret}\n"
    )
    tmp.chmod(0o600)
    tmp.replace(path)  # atomic: a process never reads half a file


def _refused(stats: dict[str, Any]) -> int:
    return int(sum(stats["auth_refused"].values()))


def test_a_secret_rotated_mid_campaign_loses_nothing_and_sends_no_401_storm(
    fleet: Fleet, airship: Rotatable
) -> None:
    # Given a campaign under way through a worker (2 pool processes) and the beat
    fleet.spawn("worker", "--concurrency", "2")
    fleet.spawn("beat")
    campaign_id = fleet.campaign(RECIPIENTS)
    fleet.wait_for(lambda: fleet.counts(campaign_id)[1] >= RECIPIENTS // 4, "a quarter", 120)
    # When Airship takes only the new secret, the secrets file gets it, and the fleet is told
    airship.accept_only(NEW_SECRET)
    _write_secrets(
        Path(fleet.env["PASSSYNC_CREDENTIALS__SECRETS_FILE"]), airship.handle.client_id, NEW_SECRET
    )
    rotated = subprocess.run(
        [sys.executable, "-m", "worker.cli", "accounts", "rotate"],
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    fleet.wait_for(lambda: fleet.counts(campaign_id)[0] == "completed", "completion", 180)
    # Then the rotation was checked and announced
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    # And every recipient got exactly one pass, nothing dead-lettered
    with fleet.db.session() as session:
        statuses = Counter(session.scalars(select(InboundEvent.status)))
        recipients = Counter(session.scalars(select(CampaignRecipient.state)))
    assert statuses == {"handled": RECIPIENTS}, statuses
    assert recipients == {"done": RECIPIENTS}, recipients
    live = [p for p in airship.handle.state() if not p.deleted]
    assert len({p.external_id for p in live}) == len(live) == RECIPIENTS
    # And Airship saw a handful of refusals, not a storm, and few new tokens
    stats = airship.handle.stats()
    assert _refused(stats) <= MAX_REFUSED, stats["auth_refused"]
    assert stats["token_requests"] <= 2 + MAX_REFUSED, stats["token_requests"]
    logs = "\n".join(p.read_text(errors="replace") for p in fleet.workdir.glob("*.log"))
    for secret in (OLD_SECRET, NEW_SECRET):
        assert secret not in logs + rotated.stdout + rotated.stderr
