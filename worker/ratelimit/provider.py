"""A PassProvider that takes a slot from the shared limiter before every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from worker.brokers import redis_client
from worker.config import Settings
from worker.providers.errors import RateLimitedError
from worker.providers.port import PassProvider, ProviderPass, ProviderTemplate
from worker.ratelimit.lanes import current_lane
from worker.ratelimit.limiter import SharedLimiter, account_key

T = TypeVar("T")


class LimitedProvider:
    """Wraps a provider: slot first (LimiterBusyError past the wait bound), and a 429 puts
    the whole fleet on hold for its Retry-After before it propagates."""

    def __init__(self, inner: PassProvider, limiter: SharedLimiter) -> None:
        self.inner = inner
        self.limiter = limiter
        self.name = inner.name

    def _call(self, call: Callable[[], T]) -> T:
        self.limiter.acquire(current_lane())
        try:
            return call()
        except RateLimitedError as exc:
            self.limiter.penalize(exc.retry_after)
            raise

    def create_pass(
        self, *, template_id: str, user_provided_id: str, fields: dict[str, Any]
    ) -> ProviderPass:
        return self._call(
            lambda: self.inner.create_pass(
                template_id=template_id, user_provided_id=user_provided_id, fields=fields
            )
        )

    def update_pass(self, pass_id: str, fields: dict[str, Any]) -> ProviderPass:
        return self._call(lambda: self.inner.update_pass(pass_id, fields))

    def get_pass(self, identifier: str) -> ProviderPass:
        return self._call(lambda: self.inner.get_pass(identifier))

    def list_templates(self) -> list[ProviderTemplate]:
        return self._call(self.inner.list_templates)

    def set_voided(self, pass_id: str, voided: bool) -> ProviderPass:
        return self._call(lambda: self.inner.set_voided(pass_id, voided))

    def delete_pass(self, pass_id: str) -> None:
        self._call(lambda: self.inner.delete_pass(pass_id))

    def send_push(self, pass_id: str, message: str) -> None:
        self._call(lambda: self.inner.send_push(pass_id, message))


def build_limiter(settings: Settings) -> SharedLimiter | None:
    """The configured limiter, or None when it is off or there is no Redis to share."""
    rl = settings.ratelimit
    url = rl.redis_url or settings.broker_url
    if not rl.enabled or url == "embedded":
        return None
    provider = settings.sync.provider
    account = _account(settings)
    return SharedLimiter(redis_client(url), account_key(rl.key_prefix, provider, account), rl)


def limited(settings: Settings, provider: PassProvider) -> PassProvider:
    """`provider` under the shared limiter when one is configured, else unchanged."""
    limiter = build_limiter(settings)
    return provider if limiter is None else LimitedProvider(provider, limiter)


def _account(settings: Settings) -> str:
    pc = settings.providers.passcreator
    key = pc.api_key.get_secret_value() if pc.api_key is not None else ""
    return f"{pc.base_url}|{key}"
