"""The Celery app: configured from Settings by `configure()` before any worker, beat or publish."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from celery import Celery, Task
from kombu import pools as kombu_pools
from kombu.entity import Exchange, Queue
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from worker.brokers import make_ping
from worker.config import ConfigError, Settings
from worker.tasks.liveness import HEARTBEAT_CONF_KEY, LIVENESS_CONF_KEY, Liveness
from worker.tasks.timers import DropCancelledTimers

REALTIME_QUEUE = "realtime"
BULK_QUEUE = "bulk"
AMQP_EXCHANGE = "passsync"

WHOLE_SECONDS_CONF_KEY = "passsync_whole_second_countdowns"


# What RabbitMQ adds to a dead-lettered message, as every delayed message is. Sent again with
# a countdown, a message carrying them is dropped by RabbitMQ before 4.0.1 as a dead-letter
# cycle once it re-enters a delay queue it lists (a 3 s countdown after a 1 s one: reproduced
# on 3.10). Celery's own retry strips them (since 5.7); any other resend does so here.
DEAD_LETTER_HEADERS = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)


class PasssyncTask(Task):  # type: ignore[misc]
    """Celery's Task, with countdowns RabbitMQ's delayed delivery can take.

    With quorum queues Celery delays a message in the broker, in whole seconds, and refuses a
    countdown that rounds down to 0; under an AMQP broker a countdown is therefore rounded up
    to the next whole second (a 0.5 s coalescing window waits 1 s). An ETA becomes such a
    countdown too: Celery would round its remaining time down, and the worker would then
    hold the early message until the ETA (blocking its one prefetch slot).
    """

    def apply_async(self, *args: Any, **options: Any) -> Any:
        headers = options.get("headers")
        if headers and not DEAD_LETTER_HEADERS.isdisjoint(headers):
            options["headers"] = {k: v for k, v in headers.items() if k not in DEAD_LETTER_HEADERS}
        if self.app.conf.get(WHOLE_SECONDS_CONF_KEY):
            eta = options.pop("eta", None)
            countdown = options.get("countdown")
            if eta is not None:
                if isinstance(eta, str):
                    eta = datetime.fromisoformat(eta)
                if eta.tzinfo is None:
                    eta = eta.replace(tzinfo=UTC)  # the app runs in UTC (enable_utc)
                countdown = (eta - datetime.now(UTC)).total_seconds()
            if countdown is not None:
                options["countdown"] = math.ceil(countdown) if countdown > 0 else None
        return super().apply_async(*args, **options)


celery_app = Celery(
    "passsync",
    task_cls=PasssyncTask,
    include=[
        "worker.tasks.jobs",
        "worker.tasks.campaigns",
        "worker.tasks.outbox",
        "worker.tasks.scans",
        "worker.tasks.reconcile",
        "worker.tasks.retention",
        "worker.tasks.observe",
        "worker.tasks.credentials",
    ],
)
# Every worker heartbeats the events it holds, so a killed worker's are sent again quickly.
celery_app.steps["worker"].add(Liveness)
# Finished tasks' time-limit timers are dropped, so the main process's memory stays flat.
celery_app.steps["worker"].add(DropCancelledTimers)


def configure(settings: Settings) -> Celery:
    """Point the app at the broker and set the delivery guarantees the house rules ask for."""
    if settings.embedded_broker:
        raise ConfigError(
            "broker_url (PASSSYNC_BROKER_URL): 'embedded' works only under `passsync run` or "
            "`passsync demo`; give a redis:// URL to run processes separately"
        )
    celery = settings.celery
    _drop_connections()
    celery_app.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        **(_amqp(settings) if is_amqp(settings.broker_url) else _redis(settings)),
        # The ledger is the durable record; a publish that fails fast leaves the event pending
        # for the sweeper instead of holding the HTTP request.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        # A task stuck (e.g. on a row lock) is ended long before its message could be
        # redelivered as a duplicate by the visibility timeout.
        task_time_limit=celery.visibility_timeout_seconds // 2,
        task_soft_time_limit=celery.visibility_timeout_seconds // 2 - 5,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # In KiB; None leaves pool processes alone.
        worker_max_memory_per_child=celery.max_memory_per_child_mb * 1024 or None,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=REALTIME_QUEUE,
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        # Read by the Liveness bootstep: heartbeat every third of it, dead after it. RabbitMQ
        # hands a dead consumer's unacknowledged messages back at once: no heartbeat there.
        **{
            HEARTBEAT_CONF_KEY: settings.sync.claim_seconds,
            LIVENESS_CONF_KEY: None if is_amqp(settings.broker_url) else settings.broker_url,
        },
        beat_schedule={
            "sweep-pending-events": {
                "task": "passsync.sweep_pending",
                "schedule": settings.sync.sweep_interval_seconds,
                "options": {
                    "queue": REALTIME_QUEUE,
                    "expires": settings.sync.sweep_interval_seconds,
                },
            },
            "campaign-tick": {
                "task": "passsync.campaign_tick",
                "schedule": settings.campaigns.tick_seconds,
                # Short and frequent: on the realtime queue, so a full bulk queue cannot
                # delay the start of a campaign or the recovery of a lost chunk.
                "options": {"queue": REALTIME_QUEUE, "expires": settings.campaigns.tick_seconds},
            },
            # Outbound events: due deliveries (retries wait in SQL, not in a countdown).
            "deliver-outbox": {
                "task": "passsync.deliver_outbox",
                "schedule": settings.outbound.poll_seconds,
                "options": {"queue": REALTIME_QUEUE, "expires": settings.outbound.poll_seconds},
            },
            # Scans a worker never finished (a lost message, a failed publish).
            "sweep-scans": {
                "task": "passsync.sweep_scans",
                "schedule": settings.sync.sweep_interval_seconds,
                "options": {
                    "queue": REALTIME_QUEUE,
                    "expires": settings.sync.sweep_interval_seconds,
                },
            },
            # Drift between the provider's passes and ours (a no-op unless reconcile.enabled).
            "reconcile-passes": {
                "task": "passsync.reconcile",
                "schedule": settings.reconcile.interval_seconds,
                "options": {"queue": BULK_QUEUE, "expires": settings.reconcile.interval_seconds},
            },
            # Finished ledger, outbox, adoption and scan rows past their windows (README,
            # "Retention"); on the bulk queue: realtime work goes first.
            "purge-retention": {
                "task": "passsync.purge_retention",
                "schedule": settings.retention.interval_seconds,
                "options": {"queue": BULK_QUEUE, "expires": settings.retention.interval_seconds},
            },
            "purge-audit-log": {
                "task": "passsync.purge_audit",
                "schedule": settings.audit.purge_interval_seconds,
                "options": {
                    "queue": REALTIME_QUEUE,
                    "expires": settings.audit.purge_interval_seconds,
                },
            },
        },
    )
    forget_topology()
    return celery_app


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")


def unacked_mutex_expire(restore_interval_seconds: int) -> int:
    """How long the restore pass's lock outlives a worker killed while holding it."""
    return max(5, 3 * restore_interval_seconds)


def _redis(settings: Settings) -> dict[str, Any]:
    celery = settings.celery
    return {
        "broker_transport_options": {
            "visibility_timeout": celery.visibility_timeout_seconds,
            "unacked_restore_interval": celery.unacked_restore_interval_seconds,
            "unacked_restore_throttle": 1,
            # The restore pass holds a Redis lock while it runs (a few ms); a worker killed in
            # that moment would leave it for kombu's default 300 s, and no unacknowledged
            # message would come back meanwhile. Restores are WATCH transactions, so a lock
            # that lapses during a slow pass only costs a repeated attempt, never a twin.
            "unacked_mutex_expire": unacked_mutex_expire(celery.unacked_restore_interval_seconds),
            "socket_timeout": celery.publish_timeout_seconds,
            "socket_connect_timeout": celery.publish_timeout_seconds,
            # A worker serving both queues takes from them in the order given (realtime
            # first), not round-robin: a customer event never waits behind a campaign's chunks.
            "queue_order_strategy": "priority",
        },
        "task_queues": None,
        "task_default_exchange_type": "direct",
        "task_default_queue_type": "classic",
        WHOLE_SECONDS_CONF_KEY: False,
    }


def _amqp(settings: Settings) -> dict[str, Any]:
    """RabbitMQ: replicated quorum queues on a topic exchange (Celery then delays countdown
    tasks in the broker, not in worker memory), publisher confirms.

    An unacknowledged message goes back to its queue as soon as the worker's connection
    drops (no visibility timeout), and a quorum queue counts redeliveries itself.
    """
    exchange = Exchange(AMQP_EXCHANGE, type="topic", durable=True)  # type: ignore[no-untyped-call]
    queues = [
        Queue(  # type: ignore[no-untyped-call]
            name,
            exchange,
            routing_key=name,
            durable=True,
            queue_arguments={"x-queue-type": "quorum"},
        )
        for name in (REALTIME_QUEUE, BULK_QUEUE)
    ]
    timeout = settings.celery.publish_timeout_seconds
    return {
        "broker_transport_options": {"confirm_publish": True, "connect_timeout": timeout},
        "task_queues": queues,
        "task_default_exchange": AMQP_EXCHANGE,
        "task_default_exchange_type": "topic",
        "task_default_routing_key": REALTIME_QUEUE,
        "task_default_queue_type": "quorum",
        "worker_detect_quorum_queues": True,
        WHOLE_SECONDS_CONF_KEY: True,
    }


def declare_amqp_topology(url: str) -> None:
    """Declare the quorum queues and Celery's delayed-delivery exchanges, and bind them.

    Workers do this when they start; a publisher (the API, beat) does it too, so a delayed
    message published before any worker has started is not dropped as unroutable. Safe to
    repeat; a no-op for a Redis broker.
    """
    if not is_amqp(url):
        return
    with celery_app.connection_for_write(url) as conn:
        declare_native_delayed_delivery_exchanges_and_queues(conn, "quorum")
        channel = conn.default_channel
        for queue in celery_app.conf.task_queues or ():
            queue.bind(channel).declare()
            bind_queue_to_native_delayed_delivery_exchange(conn, queue)


def broker_ping(url: str, timeout: float = 2.0) -> Callable[[], None]:
    """A readiness probe for the broker: a Redis PING, or an AMQP connection handshake."""
    if not is_amqp(url):
        return cast(Callable[[], None], make_ping(url, timeout=timeout))

    def ping() -> None:
        with celery_app.connection_for_write(url) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)

    return ping


def queue_depths(broker_url: str) -> dict[str, int]:
    """Messages waiting in the realtime and bulk queues (Redis list lengths, or AMQP's
    passive declare); raises when the broker does not answer."""
    depths: dict[str, int] = {}
    with celery_app.connection_for_write(broker_url) as conn:
        for queue in (REALTIME_QUEUE, BULK_QUEUE):
            # A channel each: AMQP closes a channel whose passive declare failed.
            with conn.channel() as channel:
                try:
                    declared = channel.queue_declare(queue=queue, passive=True)
                    depths[queue] = int(declared.message_count)
                except conn.channel_errors:
                    depths[queue] = 0  # never declared: nothing was ever published to it
    return depths


def forget_topology() -> None:
    """Make Celery read the queues, exchanges and routes again from the new configuration.

    Celery computes them once per app (cached properties of `app.amqp`: `queues`, `router`,
    `default_exchange`, the task sender). A process that configured a Redis broker and
    published, then configured RabbitMQ, kept Redis' classic `realtime` queue on a direct
    exchange: its publishes re-declared that queue and RabbitMQ refused them
    (PRECONDITION_FAILED against the quorum queue), and a countdown was not sent through the
    delayed-delivery exchanges since no quorum queue was seen.
    """
    amqp = celery_app.__dict__.get("amqp")
    if amqp is None:
        return  # never used: Celery builds it from the current configuration
    for klass in type(amqp).__mro__:
        for name, attr in vars(klass).items():
            if isinstance(attr, functools.cached_property):
                amqp.__dict__.pop(name, None)
    amqp.flush_routes()


def _drop_connections() -> None:
    """Forget pooled broker connections so a re-configured app talks to the new broker.

    Celery has no public call for this (app.close() also deregisters the app); these are the
    same attributes Celery itself resets after a fork.
    """
    pool = celery_app._pool
    if pool is not None:
        pool.force_close_all()
        celery_app._pool = None
    if "amqp" in celery_app.__dict__:
        celery_app.amqp._producer_pool = None
    # kombu caches producer pools per URL, closed ones included.
    kombu_pools.reset()  # type: ignore[no-untyped-call]
