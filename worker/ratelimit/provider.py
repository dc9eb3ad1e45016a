"""A PassProvider that takes a slot from the shared limiter before every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from worker.brokers import redis_client
from worker.config import Settings
from worker.providers import registry
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

    def get_pass(self, identifier: str, *, template_id: str | None = None) -> ProviderPass:
        return self._call(lambda: self.inner.get_pass(identifier, template_id=template_id))

    def list_templates(self) -> list[ProviderTemplate]:
        return self._call(self.inner.list_templates)

    def set_voided(self, pass_id: str, voided: bool) -> ProviderPass:
        return self._call(lambda: self.inner.set_voided(pass_id, voided))

    def delete_pass(self, pass_id: str) -> None:
        self._call(lambda: self.inner.delete_pass(pass_id))

    def send_push(self, pass_id: str, message: str) -> None:
        self._call(lambda: self.inner.send_push(pass_id, message))


def build_limiter(settings: Settings, account: str | None = None) -> SharedLimiter | None:
    """The account's budget in the fleet limiter (default account for None), or None when
    the limiter is off or there is no Redis to share.

    One budget per platform account: the key is the kind plus a digest of what identifies
    the account at the platform (e.g. base URL and API key), so two accounts sharing one key
    share its budget; the ceiling is the account's `rate_per_minute`, else ratelimit.per_minute.
    """
    rl = settings.ratelimit
    url = rl.redis_url or settings.broker_url
    if not rl.enabled or url == "embedded":
        return None
    chosen = registry.account(settings, account)
    identity = chosen.kind.budget_identity(chosen.settings)
    own = chosen.settings.rate_per_minute
    budget = rl if own is None else rl.model_copy(update={"per_minute": own})
    key = account_key(rl.key_prefix, chosen.kind.kind, identity)
    return SharedLimiter(redis_client(url), key, budget)


def limited(settings: Settings, provider: PassProvider, account: str | None = None) -> PassProvider:
    """`provider` under the account's shared budget when one is configured, else unchanged."""
    limiter = build_limiter(settings, account)
    return provider if limiter is None else LimitedProvider(provider, limiter)
