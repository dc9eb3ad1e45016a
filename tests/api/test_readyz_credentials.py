"""A wrong provider API key is not "ready": /readyz says so (cached), and so does start-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from worker.api.app import create_app
from worker.commands.rules import check_templates_at_start
from worker.config import ConfigError, Settings
from worker.db import Database
from worker.providers.credentials import (
    CachedCredentialCheck,
    CredentialStatus,
    check_credentials,
)
from worker.providers.errors import RejectedError, TransientError
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import SandboxSettings

from .conftest import BrokerPing, RecordingEnqueue

KEY = "the-right-key"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(SandboxSettings(port=0, api_key=SecretStr(KEY))) as handle:
        yield handle


def with_key(
    settings_factory: Callable[..., Settings], sandbox: SandboxHandle, key: str
) -> Settings:
    account = {"base_url": sandbox.base_url, "api_key": key, "max_attempts": 1}
    return settings_factory(providers={"passcreator": account})


def template_lists(sandbox: SandboxHandle) -> int:
    return int(sandbox.stats()["calls"].get("GET /api/pass-template", 0))


def test_readyz_is_503_when_the_provider_refuses_the_key_and_checks_once_a_minute(
    settings_factory: Callable[..., Settings],
    sandbox: SandboxHandle,
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> None:
    sandbox.reset()
    settings = with_key(settings_factory, sandbox, "a-wrong-key")
    with TestClient(create_app(settings, db, enqueue, broker)) as client:
        first = client.get("/readyz")
        second = client.get("/readyz")
    assert first.status_code == 503
    assert first.json()["provider"] == "provider refused the API key (account 'passcreator')"
    assert first.json()["database"] == "ok"
    assert second.status_code == 503
    assert template_lists(sandbox) == 1  # cached: one cheap call, not one per probe


def test_readyz_is_200_with_the_right_key(
    settings_factory: Callable[..., Settings],
    sandbox: SandboxHandle,
    db: Database,
    enqueue: RecordingEnqueue,
    broker: BrokerPing,
) -> None:
    settings = with_key(settings_factory, sandbox, KEY)
    with TestClient(create_app(settings, db, enqueue, broker)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["provider"] == "ok"


def test_worker_start_stops_on_a_refused_key(
    settings_factory: Callable[..., Settings], sandbox: SandboxHandle
) -> None:
    settings = with_key(settings_factory, sandbox, "a-wrong-key")
    with pytest.raises(ConfigError) as error:
        check_templates_at_start(settings)
    assert str(error.value) == (
        "provider refused the API key (account 'passcreator'): check "
        "PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY"
    )


def test_the_check_tells_a_refused_key_from_an_unreachable_provider() -> None:
    def refused() -> None:
        raise RejectedError("401", status=401)

    def down() -> None:
        raise TransientError("503", status=503)

    def other_refusal() -> None:
        raise RejectedError("400", status=400)

    assert check_credentials(refused) is CredentialStatus.REFUSED
    assert check_credentials(down) is CredentialStatus.UNAVAILABLE
    assert check_credentials(other_refusal) is CredentialStatus.UNAVAILABLE
    assert check_credentials(lambda: None) is CredentialStatus.OK


def test_the_cached_check_asks_again_after_its_ttl() -> None:
    calls: list[int] = []
    now = [0.0]
    check = CachedCredentialCheck(lambda: calls.append(1), ttl_seconds=60, clock=lambda: now[0])
    assert [check.status(), check.status()] == [CredentialStatus.OK] * 2
    now[0] = 61
    assert check.status() is CredentialStatus.OK
    assert len(calls) == 2


def test_run_stops_before_starting_anything_on_a_refused_key(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import worker.stack
    from worker.cli import app

    started: list[object] = []
    monkeypatch.setattr(worker.stack, "Stack", lambda **kw: started.append(kw))
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL", sandbox.base_url)
    monkeypatch.setenv("PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY", "a-wrong-key")
    result = CliRunner().invoke(app, ["run"])
    # (`passsync` prints a ConfigError as one line and exits 2: tests/test_cli_setup_errors.py)
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).startswith("provider refused the API key (account 'passcreator')")
    assert started == []
