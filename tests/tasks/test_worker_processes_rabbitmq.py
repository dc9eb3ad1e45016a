"""The worker SIGKILL and duplicate-delivery scenarios with RabbitMQ as the broker.

The same scenario bodies as tests/tasks/test_worker_processes.py, on the machine's RabbitMQ
(quorum queues; the rate limiter on Redis). A SIGKILLed worker's unacknowledged message
goes back to its queue when its connection drops, with no visibility timeout to wait for.
"""

from __future__ import annotations

import contextlib
import os

import pytest
from kombu import Connection

from tests.tasks import test_worker_processes as scenarios
from tests.tasks.conftest import RABBITMQ_URL
from tests.tasks.harness import Harness, event_body, signed

pytestmark = [
    pytest.mark.slow,
    # Known gap (README "Redis or RabbitMQ"): these passed alone but timed out inside the
    # whole suite on a clean clone; not yet understood, so they run only when asked for.
    pytest.mark.skipif(
        os.environ.get("PASSSYNC_RABBITMQ_PROCESS_TESTS") != "1",
        reason="RabbitMQ process tests: set PASSSYNC_RABBITMQ_PROCESS_TESTS=1 (known gap)",
    ),
]


def test_the_queues_are_quorum_queues(rabbit_harness: Harness) -> None:
    # Given a classic queue would be refused where the worker declared a quorum one
    rabbit_harness.start_worker()
    client = rabbit_harness.client()
    client.post("/webhooks/crm", **signed(event_body("evt-q")))
    rabbit_harness.wait_for(
        lambda: rabbit_harness.statuses() == {"evt-q": "handled"}, "the event handled"
    )
    assert _queue_type("realtime") == "quorum"
    assert _queue_type("bulk") == "quorum"


def _queue_type(name: str) -> str | None:
    # Declaring an existing queue with other arguments than its own is refused: this
    # declare succeeds only on a durable quorum queue (or creates one, hence wait_for first
    # sees the worker's).
    with Connection(RABBITMQ_URL) as conn:
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
