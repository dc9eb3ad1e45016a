"""Broker options: Redis (priority queue order, visibility timeout) or RabbitMQ (quorum
queues on a topic exchange, whole-second countdowns, the limiter on Redis)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from worker.config import ConfigError, Settings
from worker.tasks.app import PasssyncTask, celery_app, configure, is_amqp

AMQP = "amqp://guest:guest@127.0.0.1:5672//"


KEYS = (
    "broker_url",
    "broker_transport_options",
    "task_queues",
    "task_default_exchange",
    "task_default_exchange_type",
    "task_default_routing_key",
    "task_default_queue_type",
    "worker_detect_quorum_queues",
    "passsync_whole_second_countdowns",
)


@pytest.fixture
def restore() -> Iterator[None]:
    """Leave the shared Celery app as the test found it."""
    saved = {key: celery_app.conf.get(key) for key in KEYS}
    yield
    celery_app.conf.update(saved)


def test_an_amqp_broker_needs_a_redis_for_the_limiter(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError, match=r"ratelimit\.redis_url"):
        make_settings(broker_url=AMQP)
    # With the limiter off, or its own Redis, the broker may be RabbitMQ.
    assert make_settings(broker_url=AMQP, ratelimit={"enabled": False}).broker_url == AMQP
    make_settings(broker_url=AMQP, ratelimit={"redis_url": "redis://127.0.0.1:6379/0"})


@pytest.mark.usefixtures("restore")
def test_rabbitmq_gets_quorum_queues_on_a_topic_exchange(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(broker_url=AMQP, ratelimit={"redis_url": "redis://x:6379/0"})
    conf = configure(settings).conf
    queues = {q.name: q for q in conf.task_queues}
    assert set(queues) == {"realtime", "bulk"}
    for queue in queues.values():
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
        assert queue.exchange.type == "topic" and queue.durable
    assert conf.broker_transport_options["confirm_publish"] is True
    assert "visibility_timeout" not in conf.broker_transport_options


@pytest.mark.usefixtures("restore")
def test_redis_keeps_its_priority_order_and_no_declared_queues(
    make_settings: Callable[..., Settings],
) -> None:
    conf = configure(make_settings(broker_url="redis://127.0.0.1:6379/0")).conf
    assert conf.task_queues is None
    assert conf.broker_transport_options["queue_order_strategy"] == "priority"
    assert not is_amqp("redis://127.0.0.1:6379/0") and is_amqp(AMQP)


@pytest.mark.usefixtures("restore")
@pytest.mark.parametrize(
    ("whole", "given", "sent"),
    [(True, 0.5, 1), (True, 2.2, 3), (True, 0, None), (False, 0.5, 0.5)],
)
def test_countdowns_are_whole_seconds_under_rabbitmq(
    monkeypatch: pytest.MonkeyPatch, whole: bool, given: float, sent: float | None
) -> None:
    seen: dict[str, Any] = {}

    def capture(_self: Any, *_args: Any, **options: Any) -> None:
        seen.update(options)

    monkeypatch.setattr(PasssyncTask.__mro__[1], "apply_async", capture)
    celery_app.conf.update(passsync_whole_second_countdowns=whole)
    task = celery_app.tasks["passsync.process_event"]
    task.apply_async(args=[1], countdown=given)
    assert seen["countdown"] == sent
