"""LimitedProvider: a slot before every call, and a real 429 from the sandbox holds the fleet."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from pydantic import SecretStr

from worker.config import RateLimitSettings, Settings
from worker.providers.errors import RateLimitedError
from worker.providers.memory import MemoryProvider
from worker.providers.passcreator.client import PasscreatorClient
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import PasscreatorSettings, SandboxSettings
from worker.ratelimit.lanes import current_lane, in_lane
from worker.ratelimit.limiter import LimiterBusyError, SharedLimiter
from worker.ratelimit.provider import LimitedProvider, build_limiter, limited

KEY = "rl-sandbox-key"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(SandboxSettings(port=0, api_key=SecretStr(KEY))) as handle:
        yield handle


def shared(url: str, key: str, **overrides: object) -> SharedLimiter:
    return SharedLimiter(
        redis.Redis.from_url(url), key, RateLimitSettings.model_validate(overrides)
    )


def client(sandbox: SandboxHandle) -> PasscreatorClient:
    return PasscreatorClient(
        PasscreatorSettings(
            base_url=sandbox.base_url, api_key=SecretStr(KEY), max_attempts=1, backoff_seconds=0
        )
    )


def test_a_429_at_one_worker_stops_the_next_call_of_another_before_it_is_sent(
    sandbox: SandboxHandle, redis_url: str
) -> None:
    # Given the provider allows one call a minute, and two workers on one shared budget
    sandbox.reset()
    sandbox.configure(rate_limit_per_minute=1)
    key = f"test:rl:{uuid.uuid4().hex}"
    worker_a = LimitedProvider(client(sandbox), shared(redis_url, key, max_wait_seconds=1))
    worker_b = LimitedProvider(client(sandbox), shared(redis_url, key, max_wait_seconds=1))
    worker_a.list_templates()
    # When worker A's next call is refused with 429 (Retry-After: 60)
    with pytest.raises(RateLimitedError) as refused:
        worker_a.list_templates()
    assert refused.value.retry_after == 60
    # Then worker B does not send its call at all: it goes back to the queue for the hold
    with pytest.raises(LimiterBusyError) as held:
        worker_b.list_templates()
    assert 59 < held.value.retry_after <= 60
    stats = sandbox.stats()
    assert stats["calls"] == {"GET /api/pass-template": 2}
    assert stats["rate_limited"] == 1


def test_each_call_takes_one_slot_in_the_current_lane(redis_url: str) -> None:
    # Given a budget of exactly two calls and no wait allowed
    key = f"test:rl:{uuid.uuid4().hex}"
    inner = MemoryProvider()
    provider = LimitedProvider(
        inner, shared(redis_url, key, per_minute=60, burst=2, max_wait_seconds=0)
    )
    # When three calls are made in the bulk lane
    with in_lane("bulk"):
        assert current_lane() == "bulk"
        provider.list_templates()
        provider.list_templates()
        with pytest.raises(LimiterBusyError):
            provider.list_templates()
    # Then the third never reached the provider, and the lane is realtime again outside
    assert inner.calls["list_templates"] == 2
    assert current_lane() == "realtime"


def test_no_limiter_without_a_shared_redis_or_when_disabled(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    inner = MemoryProvider()
    assert build_limiter(make_settings()) is None  # broker "embedded" in-process
    off = make_settings(broker_url=redis_url, ratelimit={"enabled": False})
    assert limited(off, inner) is inner
    on = limited(make_settings(broker_url=redis_url), inner)
    assert isinstance(on, LimitedProvider) and on.name == "memory"
