"""Broker options: Redis (priority queue order, visibility timeout) or RabbitMQ (quorum
queues on a topic exchange, whole-second countdowns, the limiter on Redis)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.config import ConfigError, Settings
from worker.tasks.app import PasssyncTask, celery_app, configure, forget_topology, is_amqp

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
    forget_topology()


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
@pytest.mark.parametrize("interval", [1, 10])
def test_a_worker_killed_during_a_restore_pass_blocks_restores_for_seconds_only(
    make_settings: Callable[..., Settings], interval: int
) -> None:
    # Given the restore pass's lock, which a SIGKILLed worker would leave held (kombu's
    # default: 300 s, during which no unacknowledged message of any dead worker comes back)
    settings = make_settings(
        broker_url="redis://127.0.0.1:6379/0",
        celery={"unacked_restore_interval_seconds": interval},
    )
    options = configure(settings).conf.broker_transport_options
    # Then it lapses within a few restore intervals
    assert options["unacked_mutex_expire"] == max(5, 3 * interval)
    assert options["unacked_mutex_expire"] < options["visibility_timeout"]


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


@pytest.mark.usefixtures("restore")
@pytest.mark.parametrize(
    ("ahead", "form", "sent"),
    [
        (2.2, "aware", 3),
        # A naive ETA is UTC, as everywhere in the app (enable_utc); an ISO string is parsed.
        (4.5, "naive", 5),
        (0.6, "iso", 1),
        (-5.0, "aware", None),  # already due: sent at once
    ],
)
def test_an_eta_is_sent_as_a_whole_second_countdown_under_rabbitmq(
    monkeypatch: pytest.MonkeyPatch, ahead: float, form: str, sent: int | None
) -> None:
    # Given RabbitMQ's delayed delivery, which takes whole seconds and rounds an ETA down
    seen: dict[str, Any] = {}

    def capture(_self: Any, *_args: Any, **options: Any) -> None:
        seen.update(options)

    monkeypatch.setattr(PasssyncTask.__mro__[1], "apply_async", capture)
    celery_app.conf.update(passsync_whole_second_countdowns=True)
    # When a task is sent with an ETA
    at = datetime.now(UTC) + timedelta(seconds=ahead)
    eta: Any = {"aware": at, "naive": at.replace(tzinfo=None), "iso": at.isoformat()}[form]
    celery_app.tasks["passsync.process_event"].apply_async(args=[1], eta=eta)
    # Then it goes as a countdown rounded up: it never arrives before its ETA
    assert "eta" not in seen
    assert seen["countdown"] == sent


@pytest.mark.usefixtures("restore")
def test_an_eta_is_left_alone_under_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def capture(_self: Any, *_args: Any, **options: Any) -> None:
        seen.update(options)

    monkeypatch.setattr(PasssyncTask.__mro__[1], "apply_async", capture)
    celery_app.conf.update(passsync_whole_second_countdowns=False)
    eta = datetime.now(UTC) + timedelta(seconds=2.2)
    celery_app.tasks["passsync.process_event"].apply_async(args=[1], eta=eta)
    assert seen["eta"] == eta and "countdown" not in seen


@pytest.mark.usefixtures("restore")
def test_configuring_another_broker_forgets_the_queues_celery_had_computed(
    make_settings: Callable[..., Settings],
) -> None:
    # Given a process that configured Redis and published (Celery computed its queues: a
    # classic `realtime` queue on a direct exchange, and the routes and sender using it)
    configure(make_settings(broker_url="redis://127.0.0.1:6379/0"))
    assert celery_app.amqp.queues["realtime"].exchange.type == "direct"
    assert celery_app.amqp.router is not None and celery_app.amqp.send_task_message
    # When it is configured for RabbitMQ
    configure(make_settings(broker_url=AMQP, ratelimit={"redis_url": "redis://x:6379/0"}))
    # Then it publishes to the quorum queue on the topic exchange (a stale classic queue was
    # re-declared on each publish, which RabbitMQ refused: PRECONDITION_FAILED)
    queue = celery_app.amqp.queues["realtime"]
    assert queue.queue_arguments == {"x-queue-type": "quorum"}
    assert (queue.exchange.name, queue.exchange.type) == ("passsync", "topic")
    assert celery_app.amqp.router.queues["realtime"] is queue
    assert celery_app.amqp.default_exchange.name == "passsync"
    # And back to Redis: no quorum queue left over
    configure(make_settings(broker_url="redis://127.0.0.1:6379/0"))
    assert celery_app.amqp.queues["realtime"].queue_arguments is None


@pytest.mark.usefixtures("restore")
@pytest.mark.parametrize("whole", [True, False])
def test_a_resent_message_loses_the_dead_letter_headers_rabbitmq_put_on_it(
    monkeypatch: pytest.MonkeyPatch, whole: bool
) -> None:
    # Given a task sent again with the headers of a message that waited in a delay queue
    seen: dict[str, Any] = {}

    def capture(_self: Any, *_args: Any, **options: Any) -> None:
        seen.update(options)

    monkeypatch.setattr(PasssyncTask.__mro__[1], "apply_async", capture)
    celery_app.conf.update(passsync_whole_second_countdowns=whole)
    headers = {
        "x-death": [{"count": 1, "queue": "celery_delayed_0", "reason": "expired"}],
        "x-first-death-queue": "celery_delayed_0",
        "x-last-death-reason": "expired",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    celery_app.tasks["passsync.process_event"].apply_async(args=[1], countdown=3, headers=headers)
    # Then RabbitMQ's dead-letter headers are dropped (before 4.0.1 it drops a message that
    # re-enters a queue its x-death lists), the others kept, the caller's dict untouched
    assert seen["headers"] == {"traceparent": headers["traceparent"]}
    assert "x-death" in headers
