"""A real sandbox server (uvicorn in a thread) shared by the provider tests, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import SandboxSettings

SANDBOX_KEY = "sandbox-test-key-7f3a"


@pytest.fixture(scope="session")
def _sandbox() -> Iterator[SandboxHandle]:
    settings = SandboxSettings(host="127.0.0.1", port=0, api_key=SecretStr(SANDBOX_KEY))
    with running_sandbox(settings) as handle:
        yield handle


@pytest.fixture
def sandbox_server(_sandbox: SandboxHandle) -> SandboxHandle:
    """The session's sandbox (`.base_url`, `.api_key`), emptied and at its start-up config."""
    _sandbox.reset()
    return _sandbox
