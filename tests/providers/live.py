"""Contract-test scaffolding every platform shares: when a live run may happen, and the
sandbox-or-live parametrization's skip messages."""

from __future__ import annotations

import os

import pytest

from tests.conftest import services_required

TARGETS = ("sandbox", "live")


def live_env(platform: str, required: tuple[str, ...], *, hint: str = "") -> dict[str, str]:
    """The named environment variables, or skip: live runs never happen in CI, and only when
    every one of `required` is set (`hint` says what else is needed, e.g. alternatives)."""
    if services_required():
        pytest.skip(f"live {platform} contract tests never run in CI")
    values = {name: os.environ.get(name, "") for name in required}
    missing = [name for name, value in values.items() if not value]
    if missing:
        pytest.skip(f"{' + '.join(missing)} not set{hint}: live {platform} tests skipped")
    return values


def needs_sandbox(sandbox: object | None) -> None:
    """Skip a live run of a test that inspects the sandbox or injects its faults."""
    if sandbox is None:
        pytest.skip("needs the sandbox (inspection or fault injection)")
