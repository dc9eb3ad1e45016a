"""Prometheus metrics: the families every process may move, and cheap helpers to move them.

Every family is defined here, once, so the dashboard and alert rules in deploy/ can be
checked against `NAMES` (tests/observability/test_deploy_metrics.py). Counting is a lock
and an add on a pre-bound child; with `metrics.enabled: false` every helper returns at once.
Processes that fork (Celery's prefork pool, uvicorn with several workers) count in
prometheus-client's multiprocess mode, switched on by `switch_to_multiprocess` before the
fork (`passsync worker`, and `passsync api --workers N`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client import multiprocess as mp
from prometheus_client.registry import REGISTRY, Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

_state = {"enabled": True}

# The `_created` series double what a scrape carries and no dashboard here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


def set_enabled(enabled: bool) -> None:
    """Turn counting on or off for this process (`metrics.enabled`)."""
    _state["enabled"] = enabled


def enabled() -> bool:
    return _state["enabled"]


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# -- intake (the receiver) -------------------------------------------------------------------
WEBHOOK_REQUESTS = Counter(
    "passsync_webhook_requests",
    "Webhook requests answered, by source and HTTP status.",
    ["source", "status"],
)
WEBHOOK_EVENTS = Counter(
    "passsync_webhook_events",
    "Events in accepted webhook requests: accepted (new) or duplicate.",
    ["source", "result"],
)
WEBHOOK_REJECTED = Counter(
    "passsync_webhook_rejected",
    "Webhook requests refused, by reason (signature, invalid, too_large, overloaded, ...).",
    ["source", "reason"],
)
WEBHOOK_LATENCY = Histogram(
    "passsync_webhook_duration_seconds",
    "Time from request to answer on POST /webhooks/{source}.",
    buckets=LATENCY_BUCKETS,
)

# -- engine (workers) ------------------------------------------------------------------------
EVENTS_PROCESSED = Counter(
    "passsync_events_processed",
    "Ledger events finished by a worker attempt, by outcome.",
    ["outcome"],
)
EVENT_ATTEMPTS = Counter(
    "passsync_event_attempts",
    "Worker attempts at ledger events, by result (ok, retry, dead, busy).",
    ["result"],
)
DEAD_LETTERS = Counter(
    "passsync_dead_letters",
    "Events sent to the dead letter, by reason (rejected, gave_up).",
    ["reason"],
)
CLAIM_WAITS = Counter(
    "passsync_claim_waits",
    "Attempts that found their pass claimed by another attempt and waited.",
)
EVENTS_COALESCED = Counter(
    "passsync_events_coalesced",
    "Events carried by another event's single provider call (coalescing).",
)

# -- provider calls --------------------------------------------------------------------------
PROVIDER_CALLS = Counter(
    "passsync_provider_calls",
    "HTTP attempts at the provider API, by account, action and status class.",
    ["account", "action", "status_class"],
)
PROVIDER_LATENCY = Histogram(
    "passsync_provider_call_duration_seconds",
    "Duration of one HTTP attempt at the provider API.",
    ["account", "action"],
    buckets=LATENCY_BUCKETS,
)

# -- the shared rate limiter -----------------------------------------------------------------
LIMITER_WAITS = Counter(
    "passsync_ratelimit_waits",
    "Times a provider call waited for a slot of the shared budget, by lane.",
    ["lane"],
)
LIMITER_WAIT_SECONDS = Counter(
    "passsync_ratelimit_wait_seconds",
    "Seconds provider calls slept waiting for a slot, by lane.",
    ["lane"],
)
LIMITER_BUSY = Counter(
    "passsync_ratelimit_busy",
    "Calls put back on the queue because no slot was free within the wait bound, by lane.",
    ["lane"],
)
LIMITER_HOLDS = Counter(
    "passsync_ratelimit_holds",
    "429 answers that put the whole fleet on hold for Retry-After.",
)
LIMITER_RATE = Gauge(
    "passsync_ratelimit_rate_per_second",
    "The adaptive rate in force (calls per second), as last seen by this process.",
    multiprocess_mode="mostrecent",
)

# -- outbox ----------------------------------------------------------------------------------
OUTBOX_DELIVERIES = Counter(
    "passsync_outbox_deliveries",
    "Outbound webhook delivery attempts, by verdict (delivered, retry, failed, ...).",
    ["status"],
)

# -- retention -------------------------------------------------------------------------------
RETENTION_PURGED = Counter(
    "passsync_retention_purged_rows",
    "Finished rows deleted past their retention window, by table (inbound, outbox, ...).",
    ["table"],
)

NAMES: dict[str, str] = {}  # filled below: metric family name -> its type


def _families() -> Iterable[Any]:
    return [v for v in globals().values() if isinstance(v, Counter | Gauge | Histogram)]


for _metric in _families():
    NAMES[_metric._name] = _metric._type

# Families the API's scrape-time collectors add (worker/observability/collectors.py).
NAMES |= {
    "passsync_intake_pending_events": "gauge",
    "passsync_intake_refused": "counter",
    "passsync_ledger_events": "gauge",
    "passsync_outbox_backlog": "gauge",
    "passsync_outbox_oldest_age_seconds": "gauge",
    "passsync_campaign_recipients": "gauge",
    "passsync_broker_queue_depth": "gauge",
}


def exposed_names() -> set[str]:
    """Every sample name a scrape can show (counters add _total, histograms their series)."""
    names: set[str] = set()
    for name, kind in NAMES.items():
        if kind == "counter":
            names.add(name + "_total")
        elif kind == "histogram":
            names |= {name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(name)
    return names


# -- helpers the code calls ------------------------------------------------------------------

_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """A pre-bound child, cached: `labels()` takes a lock and builds a tuple each time."""
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def webhook_answered(source: str, status: int, seconds: float, reason: str | None) -> None:
    """One webhook request answered (any status); `reason` is set for refusals."""
    if not _state["enabled"]:
        return
    _child(WEBHOOK_REQUESTS, source, str(status)).inc()
    if reason is not None:
        _child(WEBHOOK_REJECTED, source, reason).inc()
    WEBHOOK_LATENCY.observe(seconds)


def webhook_events(source: str, accepted: int, duplicates: int) -> None:
    if not _state["enabled"]:
        return
    if accepted:
        _child(WEBHOOK_EVENTS, source, "accepted").inc(accepted)
    if duplicates:
        _child(WEBHOOK_EVENTS, source, "duplicate").inc(duplicates)


def event_finished(outcomes: Iterable[str], coalesced: int = 0) -> None:
    """A worker attempt finished an event; one count per pass outcome (or the event's)."""
    if not _state["enabled"]:
        return
    _child(EVENT_ATTEMPTS, "ok").inc()
    for outcome in outcomes:
        _child(EVENTS_PROCESSED, outcome).inc()
    if coalesced:
        EVENTS_COALESCED.inc(coalesced)


def event_attempt(result: str) -> None:
    """An attempt that did not finish its event: retry, busy (claim wait), dead."""
    if not _state["enabled"]:
        return
    _child(EVENT_ATTEMPTS, result).inc()
    if result == "busy":
        CLAIM_WAITS.inc()


def dead_letter(reason: str) -> None:
    if not _state["enabled"]:
        return
    _child(DEAD_LETTERS, reason).inc()
    _child(EVENTS_PROCESSED, "dead").inc()


def status_class(status: int | None) -> str:
    """2xx, 4xx, 429, 5xx, or `error` for an attempt without an answer (timeout, refused)."""
    if status is None:
        return "error"
    if status == 429:
        return "429"
    return f"{status // 100}xx"


def provider_call(account: str, action: str, status: int | None, seconds: float) -> None:
    if not _state["enabled"]:
        return
    _child(PROVIDER_CALLS, account, action, status_class(status)).inc()
    _child(PROVIDER_LATENCY, account, action).observe(seconds)


def limiter_waited(lane: str, seconds: float) -> None:
    if not _state["enabled"]:
        return
    _child(LIMITER_WAITS, lane).inc()
    _child(LIMITER_WAIT_SECONDS, lane).inc(seconds)


def limiter_busy(lane: str) -> None:
    if _state["enabled"]:
        _child(LIMITER_BUSY, lane).inc()


def limiter_hold() -> None:
    if _state["enabled"]:
        LIMITER_HOLDS.inc()


def limiter_rate(rate_per_second: float) -> None:
    if _state["enabled"]:
        LIMITER_RATE.set(rate_per_second)


def retention_purged(table: str, rows: int) -> None:
    if not _state["enabled"] or rows <= 0:
        return
    _child(RETENTION_PURGED, table).inc(rows)


def outbox_delivered(verdicts: Iterable[str]) -> None:
    if not _state["enabled"]:
        return
    for verdict in verdicts:
        _child(OUTBOX_DELIVERIES, str(verdict)).inc()


# -- exposition ------------------------------------------------------------------------------


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def scrape_registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """The registry one scrape reads: this process's (or every process's, in multiprocess
    mode) families plus `extra` collectors."""
    if multiprocess():
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class _Forward(Collector):
    """The process registry, read through another registry (so extras can be added)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Any]:
        return self._source.collect()


def mark_process_dead(pid: int) -> None:
    """Forget a dead process's live gauges (multiprocess mode); a no-op otherwise."""
    if multiprocess():
        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def switch_to_multiprocess(path: str) -> None:
    """Count in prometheus-client's multiprocess mode from now on (before any fork).

    The mode is normally chosen from PROMETHEUS_MULTIPROC_DIR when prometheus-client is
    imported, which the CLI has done long before it knows which command runs; this sets the
    variable, selects the multiprocess value class, and gives the families defined here new
    values of that class (no child of a labelled family exists yet in a fresh process).
    """
    os.environ[MULTIPROC_ENV] = path
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    for metric in _families():
        if metric._labelnames:
            metric._metrics.clear()
        else:
            metric._metric_init()
    _children.clear()


def prepare_multiprocess_dir(path: str, *, wipe: bool) -> None:
    """Create the multiprocess directory; `wipe` removes a previous run's files (the parent
    process does it once, before any child counts)."""
    os.makedirs(path, exist_ok=True)
    if wipe:
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
