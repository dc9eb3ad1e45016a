"""A real Airship sandbox server (uvicorn in a thread) shared by these tests, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.providers.airship.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.airship.settings import AirshipSandboxSettings


@pytest.fixture(scope="session")
def _airship_sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(AirshipSandboxSettings(host="127.0.0.1", port=0)) as handle:
        yield handle


@pytest.fixture
def airship_sandbox(_airship_sandbox: SandboxHandle) -> SandboxHandle:
    """The session's Airship sandbox, emptied and at its start-up config."""
    _airship_sandbox.reset()
    return _airship_sandbox
