"""Template names resolved to provider ids: cached per process, refreshed on a miss.

A name the provider does not list after a refresh fails the event with a clear, permanent
reason: passsync never guesses another template. The cache also expires after
`max_age_seconds`, so a template renamed at the provider stops resolving within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from worker.providers.errors import RejectedError
from worker.providers.port import PassProvider


class UnknownTemplateError(RejectedError):
    """The rule names a template the provider does not have (renamed or deleted)."""


class TemplateResolver:
    def __init__(
        self,
        provider: PassProvider,
        *,
        max_age_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._ids: dict[str, str] = {}
        self._loaded_at: float | None = None
        self._max_age = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def resolve(self, name: str) -> str:
        """The id of template `name`; lists the provider's templates on a miss or expiry."""
        with self._lock:
            if name in self._ids and not self._expired():
                return self._ids[name]
        return self.refresh(name)

    def refresh(self, name: str) -> str:
        """List the provider's templates now and return `name`'s id (UnknownTemplateError)."""
        templates = self._provider.list_templates()
        with self._lock:
            self._ids = {t.name: t.template_id for t in templates}
            self._loaded_at = self._clock()
            if name not in self._ids:
                known = ", ".join(sorted(self._ids)) or "none"
                raise UnknownTemplateError(
                    f"template {name!r} not found at provider {self._provider.name} "
                    f"(known: {known})"
                )
            return self._ids[name]

    def _expired(self) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at >= self._max_age
