"""Builds the configured provider client; only edges (tasks, CLI, API wiring) call this."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.config import Settings
from worker.providers.port import PassProvider


def build_provider(
    settings: Settings, *, on_attempt: Callable[[Any], None] | None = None
) -> PassProvider:
    """The configured client; `on_attempt` receives one record per HTTP attempt (the audit)."""
    if settings.sync.provider == "passcreator":
        from worker.providers.passcreator.client import PasscreatorClient

        return PasscreatorClient(settings.providers.passcreator, on_attempt=on_attempt)
    raise ValueError(f"unknown provider {settings.sync.provider!r}")  # pragma: no cover
