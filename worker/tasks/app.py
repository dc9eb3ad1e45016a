"""The Celery app: configured from Settings by `configure()` before any worker, beat or publish."""

from __future__ import annotations

from celery import Celery
from kombu import pools as kombu_pools

from worker.config import ConfigError, Settings
from worker.tasks.liveness import HEARTBEAT_CONF_KEY, Liveness

REALTIME_QUEUE = "realtime"
BULK_QUEUE = "bulk"

celery_app = Celery(
    "passsync",
    include=[
        "worker.tasks.jobs",
        "worker.tasks.campaigns",
        "worker.tasks.outbox",
        "worker.tasks.scans",
        "worker.tasks.reconcile",
    ],
)
# Every worker heartbeats the events it holds, so a killed worker's are sent again quickly.
celery_app.steps["worker"].add(Liveness)


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
        broker_transport_options={
            "visibility_timeout": celery.visibility_timeout_seconds,
            "unacked_restore_interval": celery.unacked_restore_interval_seconds,
            "unacked_restore_throttle": 1,
            "socket_timeout": celery.publish_timeout_seconds,
            "socket_connect_timeout": celery.publish_timeout_seconds,
            # A worker serving both queues takes from them in the order given (realtime
            # first), not round-robin: a customer event never waits behind a campaign's chunks.
            "queue_order_strategy": "priority",
        },
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
        # Read by jobs.enqueue_events: each event task waits the coalescing window.
        passsync_coalesce_window_seconds=settings.sync.coalesce_window_ms / 1000,
        # Read by the Liveness bootstep: heartbeat every third of it, dead after it.
        **{HEARTBEAT_CONF_KEY: settings.sync.claim_seconds},
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
    return celery_app


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
