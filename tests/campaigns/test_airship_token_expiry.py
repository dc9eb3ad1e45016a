"""An Airship OAuth2 token that expires in the middle of a campaign, with real `passsync
worker` and `passsync beat` processes, Postgres, Redis and the Airship sandbox.

Issue 14's acceptance: the token is refreshed once, the sandbox sees no request with the
expired token after the refresh, nothing is dead-lettered, every recipient gets one pass.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

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
from worker.providers.airship.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.airship.settings import AirshipSandboxSettings
from worker.tasks.app import configure
from worker.tasks.runtime import reset_runtime

pytestmark = pytest.mark.slow
RECIPIENTS = 120


@pytest.fixture(scope="module")
def _airship() -> Iterator[SandboxHandle]:
    with running_sandbox(AirshipSandboxSettings(host="127.0.0.1", port=0)) as handle:
        yield handle


@pytest.fixture
def fleet(
    pg_url: str, _airship: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet]:
    need_service("Redis", "127.0.0.1", 6379)
    client = redis.Redis.from_url(FLEET_REDIS_URL)
    client.flushdb()
    _airship.reset()
    account = "PASSSYNC_PROVIDERS__AIRSHIP__"
    env = {
        "PASSSYNC_DATABASE_URL": pg_url,
        "PASSSYNC_BROKER_URL": FLEET_REDIS_URL,
        "PASSSYNC_DATA_DIR": str(tmp_path / "data"),
        "PASSSYNC_SOURCES__CRM__SECRET": SECRET,
        "PASSSYNC_SYNC__DEFAULT_ACCOUNT": "airship",
        f"{account}KIND": "airship",
        f"{account}AUTH": "oauth2",
        f"{account}BASE_URL": f"{_airship.base_url}/v1",
        f"{account}TOKEN_URL": f"{_airship.base_url}/token",
        f"{account}API_KEY": _airship.client_id,
        f"{account}SECRET": _airship.client_secret,
        f"{account}BACKOFF_SECONDS": "0.05",
        "PASSSYNC_CELERY__VISIBILITY_TIMEOUT_SECONDS": "10",
        "PASSSYNC_CELERY__UNACKED_RESTORE_INTERVAL_SECONDS": "1",
        "PASSSYNC_SYNC__RETRY_BASE_SECONDS": "0.2",
        "PASSSYNC_SYNC__RETRY_MAX_SECONDS": "2",
        "PASSSYNC_SYNC__CLAIM_SECONDS": "3",
        "PASSSYNC_SYNC__COALESCE_WINDOW_MS": "0",
        # Paced (20 calls a second), so the token expires with most of the campaign to go.
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
    fleet = Fleet(dict(os.environ), settings, db, _airship, tmp_path)  # type: ignore[arg-type]
    try:
        yield fleet
    finally:
        fleet.stop()
        reset_runtime()
        db.dispose()
        client.flushdb()
        client.close()


def test_a_token_that_expires_mid_campaign_is_refreshed_once(fleet: Fleet) -> None:
    sandbox: SandboxHandle = fleet.sandbox  # type: ignore[assignment]
    # Given a campaign under way through one worker process (one token cache) and the beat
    fleet.spawn("worker", "--concurrency", "1")
    fleet.spawn("beat")
    campaign_id = fleet.campaign(RECIPIENTS)
    fleet.wait_for(lambda: fleet.counts(campaign_id)[1] >= 20, "20 recipients done", 120)
    before = sandbox.stats()
    # When every token the sandbox issued expires mid-campaign
    assert sandbox.expire_tokens() >= 1
    fleet.wait_for(lambda: fleet.counts(campaign_id)[0] == "completed", "completion", 180)
    after = sandbox.stats()
    # Then the token was refreshed once, and the expired one never reached the sandbox again
    assert after["token_requests"] - before["token_requests"] == 1
    # (one request met the expired token: the worker's next call, which then refreshed it)
    assert after["auth_refused"].get("expired", 0) - before["auth_refused"].get("expired", 0) == 1
    assert after["creates"] > before["creates"]  # the campaign went on after the expiry
    assert after["stale_token_after_refresh"] == 0
    assert set(after["auth_refused"]) <= {"expired"}
    # And nothing was dead-lettered or failed: every recipient has exactly one pass
    with fleet.db.session() as session:
        statuses = Counter(session.scalars(select(InboundEvent.status)))
        recipients = Counter(session.scalars(select(CampaignRecipient.state)))
    assert "dead" not in statuses and "failed" not in statuses, statuses
    assert set(recipients) == {"done"}, recipients
    live = [p for p in sandbox.state() if not p.deleted]
    assert len(live) == RECIPIENTS
    assert len({p.external_id for p in live}) == RECIPIENTS
