"""Builds the configured provider client; only edges (tasks, CLI, API wiring) call this."""

from __future__ import annotations

from worker.config import Settings
from worker.providers.port import PassProvider


def build_provider(settings: Settings) -> PassProvider:
    if settings.sync.provider == "passcreator":
        from worker.providers.passcreator.client import PasscreatorClient

        return PasscreatorClient(settings.providers.passcreator)
    raise ValueError(f"unknown provider {settings.sync.provider!r}")  # pragma: no cover
