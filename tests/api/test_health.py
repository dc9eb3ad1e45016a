"""/healthz answers while the process lives; /readyz names the dependency that is down."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from worker.api import health
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database

from .conftest import BrokerPing, RecordingEnqueue


def test_healthz_is_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def checks(response: Any) -> dict[str, str]:
    """The dependency verdicts of a /readyz answer (without its counters)."""
    body = response.json()
    return {k: body[k] for k in ("database", "broker", "ingest")}


def test_readyz_is_ok_when_database_and_broker_answer(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert checks(response) == {"database": "ok", "broker": "ok", "ingest": "ok"}
    assert response.json()["stats"]["pending_events"] == 0


def test_readyz_names_a_broker_that_is_down(
    client: TestClient, broker: BrokerPing, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a broker ping that fails with a message carrying credentials
    broker.error = ConnectionError("redis://:hunter2@broker:6379 refused")
    # When readiness is probed
    with caplog.at_level(logging.WARNING, logger="passsync"):
        response = client.get("/readyz")
    # Then the receiver stays ready (accepted events wait in the ledger for the sweeper),
    # the broker is named as down, and the log shows no credentials
    assert response.status_code == 200
    assert checks(response) == {"database": "ok", "broker": "unavailable", "ingest": "ok"}
    assert [r.getMessage() for r in caplog.records] == [
        "readiness check broker failed (ConnectionError)"
    ]
    assert "hunter2" not in caplog.text


def test_readyz_names_a_database_that_is_down(db_down_client: TestClient) -> None:
    response = db_down_client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert checks(response) == {"database": "unavailable", "broker": "ok", "ingest": "ok"}
    assert db_down_client.get("/healthz").status_code == 200


def test_readyz_treats_a_hanging_check_as_failed(
    settings: Settings,
    db: Database,
    enqueue: RecordingEnqueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a broker ping that hangs past the probe's time limit
    release = threading.Event()
    hanging = threading.Event()

    def hang() -> None:
        if hanging.is_set():
            release.wait(10)

    try:
        with TestClient(create_app(settings, db, enqueue, hang)) as client:
            # (a first probe at the normal limit reads the schema revision once: on a loaded
            # machine that alone can take longer than the short limit below)
            assert client.get("/readyz").status_code == 200
            monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 1.0)
            hanging.set()
            # When readiness is probed
            response = client.get("/readyz")
    finally:
        release.set()
    # Then the probe answers in time, naming the broker
    assert checks(response) == {"database": "ok", "broker": "unavailable", "ingest": "ok"}


def test_readyz_on_an_unmigrated_database_says_to_migrate(
    settings: Settings, enqueue: RecordingEnqueue, broker: BrokerPing, tmp_path: Any
) -> None:
    # Given a database that answers but was never migrated
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}", pool_size=1)
    try:
        with TestClient(create_app(settings, empty, enqueue, broker)) as client:
            # When readiness is probed
            response = client.get("/readyz")
    finally:
        empty.dispose()
    # Then it is not ready, and says what to do
    assert response.status_code == 503
    assert checks(response) == {
        "database": "database not migrated: run passsync db upgrade",
        "broker": "ok",
        "ingest": "ok",
    }
