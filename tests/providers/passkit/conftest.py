"""A real PassKit sandbox server (uvicorn in a thread) shared by these tests, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker.providers.passkit.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passkit.settings import PassKitSandboxSettings


@pytest.fixture(scope="session")
def _passkit_sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(PassKitSandboxSettings(host="127.0.0.1", port=0)) as handle:
        yield handle


@pytest.fixture
def passkit_sandbox(_passkit_sandbox: SandboxHandle) -> SandboxHandle:
    """The session's PassKit sandbox, emptied and at its start-up config."""
    _passkit_sandbox.reset()
    return _passkit_sandbox
