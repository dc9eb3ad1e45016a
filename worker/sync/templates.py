"""Template names resolved to provider ids: cached per process, refreshed on a miss."""

from __future__ import annotations

import threading

from worker.providers.errors import RejectedError
from worker.providers.port import PassProvider


class UnknownTemplateError(RejectedError):
    """The rule names a template the provider does not have (renamed or deleted)."""


class TemplateResolver:
    def __init__(self, provider: PassProvider) -> None:
        self._provider = provider
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str) -> str:
        with self._lock:
            if name in self._ids:
                return self._ids[name]
        templates = self._provider.list_templates()
        with self._lock:
            self._ids = {t.name: t.template_id for t in templates}
            if name not in self._ids:
                known = ", ".join(sorted(self._ids)) or "none"
                raise UnknownTemplateError(
                    f"template {name!r} not found at {self._provider.name} (known: {known})"
                )
            return self._ids[name]
