"""The small error family every provider client raises; the domain handles only these."""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every provider failure; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class TransientError(ProviderError):
    """5xx, timeouts, connection errors, unreadable bodies: safe to try again later."""


class RateLimitedError(TransientError):
    """429: wait `retry_after` seconds before the next call."""

    def __init__(self, message: str, *, retry_after: float, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RejectedError(ProviderError):
    """A 4xx the provider will answer the same way again; `messages` are its reasons."""

    def __init__(
        self, message: str, *, status: int | None = None, messages: list[str] | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.messages = messages or []


class AlreadyExistsError(RejectedError):
    """Create refused because the external id is already used: look the pass up and adopt it."""


class NotFoundError(RejectedError):
    """404: the pass or template does not exist (or was deleted at the provider)."""


class TemplateNotFoundError(NotFoundError):
    """Create refused because the template id is unknown (deleted, or re-created under a new
    id): the caller lists the templates again and retries once."""
