"""Each metric family moves when its event happens; /metrics parses with prometheus' parser."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import BrokerPing, RecordingEnqueue, signed_headers
from tests.sync.ledger_rows import store
from tests.sync.test_claims_and_coalescing import make_event
from worker.api.app import create_app
from worker.config import RateLimitSettings, Settings
from worker.db import Database
from worker.observability import metrics
from worker.observability.collectors import DatabaseCollector
from worker.outbox.deliver import deliver_due
from worker.outbox.emit import emit
from worker.outbox.store import Claimed, SendResult
from worker.providers.errors import RejectedError
from worker.providers.memory import MemoryProvider
from worker.ratelimit.limiter import LimiterBusyError, SharedLimiter
from worker.sync.engine import SyncContext
from worker.sync.templates import TemplateResolver
from worker.tasks import jobs
from worker.tasks.runtime import Runtime, reset_runtime, set_runtime


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def event_body(event_id: str) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "type": "customer.updated",
            "occurred_at": "2026-11-20T10:00:00+00:00",
            "customer": {"id": "cus_1", "first_name": "Ada"},
        }
    ).encode()


@pytest.fixture
def client(db: Database, make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    from tests.api.conftest import SECRET

    settings = make_settings(database_url=db.url, sources={"crm": {"secret": SECRET}})
    with TestClient(create_app(settings, db, RecordingEnqueue(), BrokerPing())) as test_client:
        yield test_client


def post(client: TestClient, body: bytes, **headers: str) -> int:
    sent = signed_headers(body, msg_id=f"msg_{uuid.uuid4().hex}") | headers
    return client.post("/webhooks/crm", content=body, headers=sent).status_code


def test_a_webhook_moves_the_intake_families(client: TestClient) -> None:
    accepted = sample("passsync_webhook_events_total", source="crm", result="accepted")
    duplicates = sample("passsync_webhook_events_total", source="crm", result="duplicate")
    ok = sample("passsync_webhook_requests_total", source="crm", status="202")
    bad_sig = sample("passsync_webhook_rejected_total", source="crm", reason="signature")
    invalid = sample("passsync_webhook_rejected_total", source="crm", reason="invalid")
    unknown = sample("passsync_webhook_requests_total", source="unknown", status="404")
    latency = sample("passsync_webhook_duration_seconds_count")

    body = event_body("evt_m1")
    assert post(client, body) == 202
    assert post(client, body) == 202  # the same event again: a duplicate
    assert post(client, body, **{"webhook-signature": "v1,AAAA"}) == 401
    assert post(client, b'{"id": "x"}') == 422
    response = client.post("/webhooks/no-such-source-" + uuid.uuid4().hex, content=b"{}")
    assert response.status_code == 404

    assert sample("passsync_webhook_events_total", source="crm", result="accepted") == accepted + 1
    assert (
        sample("passsync_webhook_events_total", source="crm", result="duplicate") == duplicates + 1
    )
    assert sample("passsync_webhook_requests_total", source="crm", status="202") == ok + 2
    assert sample("passsync_webhook_rejected_total", source="crm", reason="signature") == (
        bad_sig + 1
    )
    assert sample("passsync_webhook_rejected_total", source="crm", reason="invalid") == invalid + 1
    # A path segment nobody configured is never a label value of its own.
    assert sample("passsync_webhook_requests_total", source="unknown", status="404") == unknown + 1
    assert sample("passsync_webhook_duration_seconds_count") == latency + 5


def test_metrics_off_counts_nothing_and_hides_the_endpoint(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    from tests.api.conftest import SECRET

    settings = make_settings(
        database_url=db.url, sources={"crm": {"secret": SECRET}}, metrics={"enabled": False}
    )
    before = sample("passsync_webhook_requests_total", source="crm", status="202")
    try:
        with TestClient(create_app(settings, db, RecordingEnqueue(), BrokerPing())) as client:
            assert post(client, event_body("evt_off")) == 202
            assert client.get("/metrics").status_code == 404
        assert sample("passsync_webhook_requests_total", source="crm", status="202") == before
    finally:
        metrics.set_enabled(True)


def test_metrics_endpoint_parses_and_shows_every_family(client: TestClient) -> None:
    assert post(client, event_body("evt_scrape")) == 202
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in (
        "passsync_webhook_requests",
        "passsync_webhook_duration_seconds",
        "passsync_intake_pending_events",
        "passsync_intake_refused",
        "passsync_ledger_events",
        "passsync_outbox_backlog",
        "passsync_outbox_oldest_age_seconds",
        "passsync_campaign_recipients",
    ):
        assert name in families, name
    pending = {s.labels["status"]: s.value for s in families["passsync_ledger_events"].samples}
    assert pending == {"pending": 1.0, "failed": 0.0, "dead": 0.0}
    # Every family the scrape shows is one the code declares (the dashboard relies on it).
    declared = set(metrics.NAMES)
    shown = {name for name in families if name.startswith("passsync_")}
    assert shown <= declared, shown - declared


def test_the_database_gauges_fail_soft_when_the_database_is_down(tmp_path: Any) -> None:
    broken = Database(f"sqlite:///{tmp_path}")  # a directory: cannot be opened
    try:
        assert list(DatabaseCollector(broken).collect()) == []
    finally:
        broken.dispose()


# -- the engine ------------------------------------------------------------------------------


class Retried(Exception):
    pass


@pytest.fixture
def runtime(
    db: Database, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[MemoryProvider]:
    provider = MemoryProvider()
    settings = make_settings(database_url=db.url, sync={"coalesce_window_ms": 0})
    ctx = SyncContext(settings, provider, TemplateResolver(provider))
    set_runtime(Runtime(settings=settings, db=db, sync=ctx))

    def retry(**_kwargs: Any) -> Retried:
        return Retried()

    monkeypatch.setattr(jobs.process_event, "retry", retry)
    yield provider
    reset_runtime()


def test_a_dead_letter_moves_the_engine_families(db: Database, runtime: MemoryProvider) -> None:
    dead = sample("passsync_dead_letters_total", reason="rejected")
    processed_dead = sample("passsync_events_processed_total", outcome="dead")
    created = sample("passsync_events_processed_total", outcome="created")
    ok = sample("passsync_event_attempts_total", result="ok")

    runtime.fail_next["create"] = [RejectedError("create_pass: template unknown", status=400)]
    assert jobs.process_event.run(store(db, make_event("dead-1"))) == "dead"
    assert sample("passsync_dead_letters_total", reason="rejected") == dead + 1
    assert sample("passsync_events_processed_total", outcome="dead") == processed_dead + 1
    assert sample("passsync_events_processed_total", outcome="created") == created
    assert sample("passsync_event_attempts_total", result="ok") == ok

    jobs.process_event.run(store(db, make_event("ok-1", minutes=1)))
    assert sample("passsync_events_processed_total", outcome="created") == created + 1
    assert sample("passsync_event_attempts_total", result="ok") == ok + 1


# -- the limiter -----------------------------------------------------------------------------


def test_a_429_hold_moves_the_limiter_families(redis_url: str) -> None:
    import redis

    key = f"test:metrics:{uuid.uuid4().hex}"
    settings = RateLimitSettings(per_minute=600, burst=1, max_wait_seconds=0.5)
    slept: list[float] = []
    limiter = SharedLimiter(redis.Redis.from_url(redis_url), key, settings, sleep=slept.append)
    holds = sample("passsync_ratelimit_holds_total")
    busy = sample("passsync_ratelimit_busy_total", lane="realtime")
    waits = sample("passsync_ratelimit_waits_total", lane="bulk")

    limiter.penalize(30.0)
    assert sample("passsync_ratelimit_holds_total") == holds + 1
    # The first 429 of a hold halves the rate: 10/s -> 5/s.
    assert sample("passsync_ratelimit_rate_per_second") == pytest.approx(5.0, rel=0.01)
    with pytest.raises(LimiterBusyError):
        limiter.acquire("realtime")
    assert sample("passsync_ratelimit_busy_total", lane="realtime") == busy + 1

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    other = SharedLimiter(redis.Redis.from_url(redis_url), key + ":free", settings, sleep=sleep)
    other.acquire("bulk")
    assert sample("passsync_ratelimit_waits_total", lane="bulk") == waits
    other.acquire("bulk")  # burst 1: the second call waits for the next slot
    assert sample("passsync_ratelimit_waits_total", lane="bulk") == waits + 1
    assert slept and sample("passsync_ratelimit_wait_seconds_total", lane="bulk") > 0


# -- provider calls and the outbox -------------------------------------------------------------


def test_a_provider_attempt_moves_the_call_families(db: Database) -> None:
    from worker.audit import AuditRecorder

    class Attempt:
        action, method, path, status, duration_ms, attempt, outcome = (
            "update_pass",
            "PUT",
            "/p/{id}",
            503,
            12.0,
            1,
            "server_error",
        )

    recorder = AuditRecorder(db, provider="acct-test")
    before = sample(
        "passsync_provider_calls_total",
        account="acct-test",
        action="update_pass",
        status_class="5xx",
    )
    recorder.on_attempt(Attempt())
    assert (
        sample(
            "passsync_provider_calls_total",
            account="acct-test",
            action="update_pass",
            status_class="5xx",
        )
        == before + 1
    )
    assert (
        sample(
            "passsync_provider_call_duration_seconds_count",
            account="acct-test",
            action="update_pass",
        )
        >= 1
    )


class FailingTransport:
    def send(self, claimed: Claimed) -> SendResult:
        return SendResult(started_at=datetime.now(UTC), duration_ms=3, status_code=500)


def test_an_outbox_failure_moves_the_delivery_family(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    from tests.api.conftest import SECRET

    settings = make_settings(
        database_url=db.url,
        outbound={"destinations": {"crm": {"url": "https://crm.example/hook", "secret": SECRET}}},
    )
    with db.session() as session:
        emit(session, "pass.issued", {"pass": {}}, "cus_1", "event:1")
    retry = sample("passsync_outbox_deliveries_total", status="retry")
    delivered = sample("passsync_outbox_deliveries_total", status="delivered")
    result = deliver_due(db, settings.outbound, FailingTransport())
    assert dict(result.verdicts) == {"retry": 1}
    assert sample("passsync_outbox_deliveries_total", status="retry") == retry + 1
    assert sample("passsync_outbox_deliveries_total", status="delivered") == delivered


def test_status_classes() -> None:
    assert [metrics.status_class(s) for s in (200, 201, 404, 429, 503, None)] == [
        "2xx",
        "2xx",
        "4xx",
        "429",
        "5xx",
        "error",
    ]


FORKED = """
import os, sys
from worker.observability import metrics
metrics.switch_to_multiprocess(sys.argv[1])
pid = os.fork()
if pid == 0:
    metrics.dead_letter("rejected")
    metrics.limiter_hold()
    os._exit(0)
os.waitpid(pid, 0)
metrics.dead_letter("rejected")
sys.stdout.write(metrics.render(metrics.scrape_registry()).decode())
"""


def test_multiprocess_mode_adds_up_forked_processes(tmp_path: Any) -> None:
    import subprocess
    import sys

    folder = tmp_path / "mp"
    metrics.prepare_multiprocess_dir(str(folder), wipe=True)
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(folder)], capture_output=True, text=True, check=True
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(done.stdout)
        for s in family.samples
    }
    assert samples[("passsync_dead_letters_total", (("reason", "rejected"),))] == 2.0
    assert samples[("passsync_ratelimit_holds_total", ())] == 1.0


def test_broker_depth_counts_waiting_messages(
    redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    from worker.observability.collectors import BrokerCollector
    from worker.tasks.app import celery_app, configure, queue_depths

    saved = celery_app.conf.get("broker_url"), celery_app.conf.get("broker_transport_options")
    configure(make_settings(broker_url=redis_url))
    try:
        assert queue_depths(redis_url) == {"realtime": 0, "bulk": 0}
        jobs.enqueue_events([1, 2], countdown=0)
        assert queue_depths(redis_url) == {"realtime": 2, "bulk": 0}
        [family] = list(BrokerCollector(lambda: queue_depths(redis_url)).collect())
        assert {s.labels["queue"]: s.value for s in family.samples} == {
            "bulk": 0.0,
            "realtime": 2.0,
        }

        def down() -> dict[str, int]:
            raise ConnectionError("broker down")

        assert list(BrokerCollector(down).collect()) == []  # the scrape itself still works
    finally:
        celery_app.conf.update(broker_url=saved[0], broker_transport_options=saved[1])
