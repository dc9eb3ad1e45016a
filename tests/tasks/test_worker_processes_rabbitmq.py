"""The worker SIGKILL and duplicate-delivery scenarios with RabbitMQ as the broker.

The same scenario bodies as tests/tasks/test_worker_processes.py, on the machine's RabbitMQ
(quorum queues; the rate limiter and the coalescing pacer on Redis), in a vhost of this
session's own. A SIGKILLed worker's unacknowledged message goes back to its queue when its
connection drops, with no visibility timeout to wait for. Countdowns (the coalescing window's
trailing edge, retry back-offs) wait in RabbitMQ's delayed-delivery queues.
"""

from __future__ import annotations

import contextlib
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kombu import Connection
from sqlalchemy import select

from tests.tasks import test_worker_processes as scenarios
from tests.tasks.harness import Harness, event_body, live_passes, signed
from worker.brokers import redis_client
from worker.inbound.models import InboundEvent
from worker.ratelimit.pacing import RedisPacer
from worker.tasks.app import REALTIME_QUEUE, celery_app
from worker.tasks.jobs import process_event

pytestmark = pytest.mark.slow

# How late a delayed message may arrive after its countdown: RabbitMQ expires it to the queue
# within milliseconds; the rest is a loaded CI machine. Not a speed figure: without delayed
# delivery working the message never arrives (no sweeper runs in these tests).
SLACK_SECONDS = 5.0


def test_the_queues_are_quorum_queues(rabbit_harness: Harness) -> None:
    # Given a classic queue would be refused where the worker declared a quorum one
    rabbit_harness.start_worker()
    client = rabbit_harness.client()
    client.post("/webhooks/crm", **signed(event_body("evt-q")))
    rabbit_harness.wait_for(
        lambda: rabbit_harness.statuses() == {"evt-q": "handled"}, "the event handled"
    )
    url = rabbit_harness.settings.broker_url
    assert _queue_type("realtime", url) == "quorum"
    assert _queue_type("bulk", url) == "quorum"


def _queue_type(name: str, url: str) -> str | None:
    # Declaring an existing queue with other arguments than its own is refused: this
    # declare succeeds only on a durable quorum queue (or creates one, hence wait_for first
    # sees the worker's).
    with Connection(url) as conn:
        channel = conn.channel()
        try:
            channel.queue_declare(
                name,
                durable=True,
                auto_delete=False,
                arguments={"x-queue-type": "quorum"},
            )
        except conn.channel_errors:
            return "other"
        finally:
            with contextlib.suppress(Exception):  # a channel the broker closed already
                channel.close()
    return "quorum"


def test_duplicates_make_one_pass_and_one_write(rabbit_harness: Harness) -> None:
    scenarios.test_same_event_three_times_and_concurrently_makes_one_pass_and_one_write(
        rabbit_harness
    )


def test_worker_killed_after_the_provider_write_applies_the_event_once(
    rabbit_harness: Harness,
) -> None:
    scenarios.test_worker_killed_after_the_provider_write_applies_the_event_exactly_once(
        rabbit_harness
    )


def test_pool_child_killed_mid_call_is_redelivered_and_applied_once(
    rabbit_harness: Harness,
) -> None:
    scenarios.test_pool_child_killed_mid_call_is_redelivered_and_applied_once(rabbit_harness)


def test_countdown_and_eta_tasks_wait_in_the_broker_and_arrive_on_time(
    rabbit_harness: Harness,
) -> None:
    # Given no worker: what reaches the realtime queue is read straight from it
    sent = time.monotonic()
    # When tasks are sent with a countdown, a fractional countdown and an ETA
    process_event.apply_async(args=[101], queue=REALTIME_QUEUE, countdown=2)
    process_event.apply_async(args=[102], queue=REALTIME_QUEUE, countdown=0.3)
    eta = datetime.now(UTC) + timedelta(seconds=3.5)
    process_event.apply_async(args=[103], queue=REALTIME_QUEUE, eta=eta)
    process_event.apply_async(args=[104], queue=REALTIME_QUEUE)
    # (and a resend of a message that came through a delay queue, its x-death headers with it:
    # a 3 s countdown passes through celery_delayed_0 again, a dead-letter cycle to RabbitMQ
    # before 4.0.1, which drops such a message)
    process_event.apply_async(
        args=[105], queue=REALTIME_QUEUE, countdown=3, headers=_dead_lettered_headers()
    )
    arrived = _drain(rabbit_harness.settings.broker_url, count=5, timeout=4 + SLACK_SECONDS)
    # Then the plain task is there at once, and each delayed one arrives through Celery's
    # delayed-delivery exchange, not before its time (whole seconds, rounded up) and soon after
    at = {event_id: seen - sent for event_id, (seen, _) in arrived.items()}
    assert at[104] < 1.0
    assert arrived[104][1] == "passsync"
    for event_id, due in ((102, 1.0), (101, 2.0), (105, 3.0), (103, 4.0)):
        # (the exchange it was last dead-lettered to: a level's, or the delivery exchange)
        assert arrived[event_id][1].startswith("celery_delayed_"), arrived
        assert due - 0.6 <= at[event_id] <= due + SLACK_SECONDS, (event_id, at)


def _dead_lettered_headers() -> dict[str, Any]:
    """The headers RabbitMQ put on a message that waited out a 1 s countdown."""
    return {
        "x-death": [
            {
                "count": 1,
                "reason": "expired",
                "queue": "celery_delayed_0",
                "exchange": "celery_delayed_27",
                "routing-keys": ["0." * 27 + "1.realtime"],
                "time": datetime.now(UTC).replace(microsecond=0),
            }
        ],
        "x-first-death-exchange": "celery_delayed_27",
        "x-first-death-queue": "celery_delayed_0",
        "x-first-death-reason": "expired",
    }


def _drain(url: str, *, count: int, timeout: float) -> dict[int, tuple[float, str]]:
    """Take `count` messages off the realtime queue: event id -> (when, exchange)."""
    arrived: dict[int, tuple[float, str]] = {}

    def take(body: Any, message: Any) -> None:
        arrived[body[0][0]] = (time.monotonic(), message.delivery_info["exchange"])
        message.ack()

    deadline = time.monotonic() + timeout
    queue = celery_app.amqp.queues[REALTIME_QUEUE]
    with (
        Connection(url) as conn,
        conn.Consumer(queue, callbacks=[take], accept=["json"], auto_declare=False),
    ):
        while len(arrived) < count and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=0.2)
    assert len(arrived) == count, f"only {sorted(arrived)} arrived"
    return arrived


def test_an_event_waiting_for_its_coalescing_window_comes_back_and_is_applied(
    rabbit_harness: Harness,
) -> None:
    # Given coalescing on (the default window) and a worker that applied a customer's event
    window = rabbit_harness.settings.sync.coalesce_window_ms / 1000
    assert window > 0
    rabbit_harness.start_worker()
    client = rabbit_harness.client()
    client.post("/webhooks/crm", **signed(event_body("evt-first", tier="gold")))
    rabbit_harness.wait_for(
        lambda: rabbit_harness.statuses() == {"evt-first": "handled"}, "the first event"
    )
    # And the customer's trailing-edge apply already scheduled (two applies within a window,
    # as a burst would), so the next event must wait for it: a countdown retry
    pacer = _fleet_pacer(rabbit_harness, window)
    pacer.delay("c-1")
    waits = pacer.delay("c-1")
    assert waits > 0
    # When the customer's next event arrives
    posted = time.monotonic()
    client.post("/webhooks/crm", **signed(event_body("evt-next", tier="silver", minute=1)))
    # Then it waits for the window's end in the broker, comes back and is applied
    rabbit_harness.wait_for(
        lambda: rabbit_harness.statuses()["evt-next"] == "handled",
        "the paced event to come back from its countdown",
        timeout=window + SLACK_SECONDS + 1,
    )
    assert time.monotonic() - posted >= waits - 0.5  # it did wait (not applied at once)
    (stored,) = live_passes(rabbit_harness.sandbox)
    assert stored["fields"]["tier"] == "silver"


def _fleet_pacer(harness: Harness, window: float) -> RedisPacer:
    """The pacer the worker uses: the limiter's Redis, this test's key prefix."""
    settings = harness.settings
    assert settings.ratelimit.redis_url
    client = redis_client(settings.ratelimit.redis_url)
    return RedisPacer(client, f"{settings.ratelimit.key_prefix}:pace", window)


def test_transient_failures_retry_through_the_broker_until_the_provider_answers(
    rabbit_harness: Harness,
) -> None:
    # Given a running worker (its start lists the templates) and a provider that now fails
    # every call
    rabbit_harness.start_worker()
    client = rabbit_harness.client()
    client.post("/webhooks/crm", **signed(event_body("evt-warm", customer="c-0")))
    rabbit_harness.wait_for(
        lambda: rabbit_harness.statuses() == {"evt-warm": "handled"}, "the worker to run"
    )
    rabbit_harness.sandbox.configure(error_503_probability=1.0)
    client.post("/webhooks/crm", **signed(event_body("evt-flaky")))
    # When the event has been retried with a countdown more than once (each retry's message
    # carries the x-death headers of the one before: RabbitMQ before 4.0.1 drops a message
    # dead-lettered twice through the same queue as a cycle, unless Celery strips them)
    rabbit_harness.wait_for(lambda: _attempts("evt-flaky", rabbit_harness) >= 3, "3 attempts")
    rabbit_harness.sandbox.configure(error_503_probability=0.0)
    # Then the next retry still comes back, and the event is applied once
    rabbit_harness.wait_for(
        lambda: rabbit_harness.statuses()["evt-flaky"] == "handled",
        "the retried event",
        timeout=rabbit_harness.settings.sync.retry_max_seconds + 1 + SLACK_SECONDS,
    )
    assert len(live_passes(rabbit_harness.sandbox)) == 2  # c-0's and c-1's


def _attempts(event_id: str, harness: Harness) -> Any:
    with harness.db.sessions() as session:
        return session.execute(
            select(InboundEvent.attempts).where(InboundEvent.event_id == event_id)
        ).scalar_one()
