"""SIGHUP in `passsync run` and `passsync api`: the fleet's credential generation goes up
(every process reloads), and the process goes on (it used to stop `run`)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import redis

from tests.conftest import REDIS_TEST_URL, need_service
from worker import cli
from worker.config import Settings

KEY = "test:sighup:generation"


@pytest.fixture
def generation() -> Iterator[redis.Redis]:
    where = urlsplit(REDIS_TEST_URL)
    need_service("Redis", where.hostname or "127.0.0.1", where.port or 6379)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.delete(KEY)
    previous = signal.getsignal(signal.SIGHUP)
    yield client
    signal.signal(signal.SIGHUP, previous)
    client.delete(KEY)
    client.close()


def _hang_up_and_wait(client: redis.Redis, expected: bytes) -> None:
    os.kill(os.getpid(), signal.SIGHUP)
    deadline = time.monotonic() + 5
    while client.get(KEY) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.get(KEY) == expected


def test_sighup_to_run_bumps_the_generation_in_the_stacks_redis(
    generation: redis.Redis,
) -> None:
    # Given `passsync run`'s stack, whose processes use the broker it chose (not the settings')
    settings = Settings(credentials={"generation_key": KEY})
    stack = SimpleNamespace(settings=settings, env={"PASSSYNC_BROKER_URL": REDIS_TEST_URL})
    cli._reload_on_sighup(stack)  # type: ignore[arg-type]
    # When it gets SIGHUP, twice
    _hang_up_and_wait(generation, b"1")
    _hang_up_and_wait(generation, b"2")
    # Then every process was told to reload, and this process is still here (no stop)


def test_sighup_is_ignored_by_run_while_its_stack_starts() -> None:
    signals = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    try:
        stopping = cli._install_stop_handlers()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)
        assert stopping == []
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_sighup_to_an_api_process_bumps_the_generation(generation: redis.Redis) -> None:
    settings = Settings(broker_url=REDIS_TEST_URL, credentials={"generation_key": KEY})
    cli._api_sighup(settings)
    _hang_up_and_wait(generation, b"1")
