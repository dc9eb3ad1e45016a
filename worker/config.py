"""Settings: defaults < config.yaml < environment (prefix PASSSYNC_, nesting with __).

Secrets (source secrets, admin token secrets, provider API keys) are accepted only from the
environment, provider credentials also from the secrets file (`credentials.secrets_file`, which
wins over the environment); a secret written into config.yaml stops start-up with a clear
message.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUndefined
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from worker.inbound.sources.spec import (
    AckSpec,
    DecodeSpec,
    FieldSpec,
    MapSpec,
    PingSpec,
    RouteSpec,
    SourceKind,
    VerifySpec,
)
from worker.providers import registry
from worker.providers.port import AccountSettings

ENV_PREFIX = "PASSSYNC_"
SECRET_KEYS = frozenset({"secret", "previous_secrets", "api_key"})
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# An account name is stored with each pass mapping, audit row and callback (32 characters).
ACCOUNT_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it in one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestSettings(_Strict):
    """Group commit and back-pressure of the receiver (see README, "Ingest")."""

    # Transactions in flight at once per API process; SQLite always uses one (one writer).
    writers: int = Field(default=2, ge=1, le=16)
    # Postgres: write on the event loop with psycopg's async connection (no thread hops).
    async_driver: bool = True
    # Events folded into one transaction at most.
    max_group_events: int = Field(default=2000, ge=1, le=50_000)
    # Events received but not yet committed, per process; beyond it requests get 503.
    max_pending_events: int = Field(default=20_000, ge=1)
    # A request whose commit has not finished by then gets 503 (its events may still land;
    # the sender's retry is then answered as a duplicate).
    commit_timeout_seconds: float = Field(default=10.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    # After a failed publish, events are left to the sweeper for this long (no broker calls).
    broker_cooldown_seconds: float = Field(default=5.0, ge=0)
    # After a failed commit, requests are refused at once for this long.
    database_cooldown_seconds: float = Field(default=1.0, ge=0)


class ApiSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_events: int = Field(default=500, ge=1, le=10_000)
    signature_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    workers: int = Field(default=1, ge=1, le=64)
    # Connections and requests in flight per process; past it uvicorn answers 503 at once.
    limit_concurrency: int = Field(default=1000, ge=1)
    # A connection must send its request's headers within this, or it is closed.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # An idle kept-alive connection is closed after this.
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    # Request line and headers at most (h11; httptools has its own fixed limit).
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    # Connections the kernel queues before uvicorn accepts them.
    backlog: int = Field(default=2048, ge=1)
    # Proxies whose X-Forwarded-For/-Proto are believed (comma separated, or "*").
    forwarded_allow_ips: str = "127.0.0.1"
    ingest: IngestSettings = IngestSettings()


class SourceSettings(_Strict):
    """An inbound webhook source; its secret comes from PASSSYNC_SOURCES__<NAME>__SECRET.

    `kind` standard takes the canonical event signed with Standard Webhooks; the other kinds
    take a sender's own webhooks (see README, "Sources"). Every adapter key below replaces
    the kind's preset; `custom` starts from nothing (worker/inbound/sources/spec.py).
    """

    kind: SourceKind = "standard"
    # The signing secret (a sender's client/endpoint/webhook secret, a URL token, or the
    # Basic auth password), from the environment only.
    secret: SecretStr | None = None
    # Extra secrets still accepted during a key rotation, space separated.
    previous_secrets: SecretStr | None = None
    # The URL exactly as configured at the sender (Square and HubSpot sign it); none: the
    # URL as received, which differs behind a proxy or CDN.
    public_url: str | None = None
    # Values the source's expressions read as `config.<name>` (e.g. organization_id,
    # pass_key).
    params: dict[str, str] = {}
    # Permit `verify: [{scheme: none}]` (tests and trusted networks only).
    allow_unsigned: bool = False
    verify: list[VerifySpec] | None = None
    require: list[str] | None = None
    ping: PingSpec | None = None
    decode: DecodeSpec | None = None
    split: str | None = None
    max_items: int | None = Field(default=None, ge=1, le=10_000)
    event_type: FieldSpec | None = None
    delivery_id: FieldSpec | None = None
    routes: list[RouteSpec] | None = None
    scan_routes: list[RouteSpec] | None = None
    map: MapSpec | None = None
    target: Literal["events", "scans"] | None = None
    ack: AckSpec | None = None


class AdminToken(_Strict):
    """An admin API token; its secret comes from PASSSYNC_ADMIN_TOKENS__<NAME>__SECRET."""

    scopes: list[Literal["read", "write"]] = ["read"]
    secret: SecretStr | None = None


class PassRule(_Strict):
    """Shorthand for a rule (kept for older configs): these event types upsert this pass."""

    template: str = Field(min_length=1)
    account: str | None = None
    event_types: list[str] = ["customer.created", "customer.updated"]
    fields: dict[str, str] = {}


class RuleAction(_Strict):
    """One action; exactly one of upsert/void/unvoid/delete/push names the pass key.

    Semantics (one verb, template for upsert, message for push, expressions, paths) are
    checked by worker.sync.rules.compile_rules, which names the rule in each error.
    """

    upsert: str | None = None
    void: str | None = None
    unvoid: str | None = None
    delete: str | None = None
    push: str | None = None
    template: str | None = None
    # upsert only: the account (a name under `providers:`) that holds the pass; default
    # sync.default_account. Every action on the pass key goes to that account.
    account: str | None = None
    fields: dict[str, str | int | float | bool] = {}
    message: str | None = None
    # upsert only: when the pass was deleted at the provider (404 on update), create it anew
    # (true, the default) or send the event to the dead letter (false).
    recreate_if_missing: bool | None = None


class SyncRule(_Strict):
    """On these event types, when the condition holds, apply the actions in order."""

    name: str
    on: list[str] = []
    when: str | bool | None = None
    actions: list[RuleAction] = []

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data


LOYALTY_FIELDS = {
    "firstName": "customer.first_name",
    "lastName": "customer.last_name",
    "email": "customer.email",
    "tier": "customer.attributes.tier",
    "points": "customer.attributes.points",
}


class SyncSettings(_Strict):
    # The account (a name under `providers:`) an upsert rule uses when it names none; none:
    # the only account, else the first one configured.
    default_account: str | None = None
    # Every pass passsync creates gets the external id `<prefix>_<pass key>_<customer id>` (the
    # provider's uniqueness guard against twins).
    external_id_prefix: str = Field(default="passsync", pattern=r"^[A-Za-z0-9_]{1,32}$")
    rules: list[SyncRule] = [
        SyncRule(
            name="loyalty_card",
            on=["customer.created", "customer.updated"],
            actions=[RuleAction(upsert="loyalty", template="Loyalty Card", fields=LOYALTY_FIELDS)],
        )
    ]
    passes: dict[str, PassRule] = {}
    # Template names are resolved to ids through the provider's list, cached this long (a
    # name not in the cache refreshes at once), so a rename is noticed within this time.
    template_cache_seconds: float = Field(default=300.0, ge=0)
    max_attempts: int = Field(default=12, ge=1, le=50)
    retry_base_seconds: float = Field(default=2.0, ge=0)
    retry_max_seconds: float = Field(default=300.0, ge=0)
    sweep_interval_seconds: float = Field(default=30.0, gt=0)
    sweep_stale_after_seconds: float = Field(default=60.0, gt=0)
    # A customer is applied at most once per window: a quiet customer's event runs at once,
    # events arriving within a window of its last apply wait for the window's end and
    # collapse into one provider call carrying the latest state (0: off).
    coalesce_window_ms: int = Field(default=1000, ge=0, le=60_000)
    # A commit group's events are applied in one task, this many at a time per worker
    # process (threads: their provider calls and database waits overlap); 1 on SQLite.
    group_concurrency: int = Field(default=8, ge=1, le=64)
    # The lease on a pass an attempt works on: the living attempt renews it every third of
    # this (a heartbeat), so it may take longer than this; a killed worker's passes, and the
    # events it held, are taken up again within about this (see README, "Crash recovery").
    claim_seconds: float = Field(default=10.0, ge=1.0, le=600)

    @model_validator(mode="before")
    @classmethod
    def _passes_replace_default_rules(cls, data: Any) -> Any:
        # A config that still uses only the `passes` shorthand means exactly those passes.
        if isinstance(data, dict) and data.get("passes") and "rules" not in data:
            data = {**data, "rules": []}
        # `sync.provider` (before named accounts) named the only platform: its account.
        if isinstance(data, dict) and "provider" in data:
            data = {key: value for key, value in data.items() if key != "provider"}
        return data

    @field_validator("passes")
    @classmethod
    def _pass_keys(cls, value: dict[str, PassRule]) -> dict[str, PassRule]:
        for key in value:
            if not NAME_RE.match(key):
                raise ValueError(f"pass key {key!r} must match {NAME_RE.pattern}")
        return value


class CelerySettings(_Strict):
    visibility_timeout_seconds: int = Field(default=3600, ge=10)
    unacked_restore_interval_seconds: int = Field(default=10, ge=1)
    concurrency: int = Field(default=2, ge=1, le=64)
    publish_timeout_seconds: float = Field(default=2.0, gt=0)
    # A pool process whose resident memory passes this is replaced after its current task
    # (Celery's worker_max_memory_per_child; the task is acknowledged first, nothing is lost).
    # Bounds a long campaign's worker memory; 0 = never replace.
    max_memory_per_child_mb: int = Field(default=400, ge=0)


class RateLimitSettings(_Strict):
    """The provider budget shared by every worker through Redis (see README, "Rate limit")."""

    enabled: bool = True
    # The Redis that holds the budget; none means broker_url (the embedded one under `run`).
    redis_url: str | None = None
    # fixed: per_minute is the account's known limit (a 429 cuts the rate, which climbs back
    # to per_minute). adaptive: per_minute is only the start; the fleet finds the account's
    # real limit from 429s (additive increase, multiplicative decrease) up to max_per_minute.
    mode: Literal["fixed", "adaptive"] = "fixed"
    # The provider's limit for one account (fixed), or the rate to start from (adaptive).
    per_minute: int = Field(default=600, ge=1)
    # adaptive: the ceiling the learned rate never exceeds; none means 4 x per_minute.
    max_per_minute: int | None = Field(default=None, ge=1)
    # Calls allowed back to back after a quiet spell.
    burst: int = Field(default=10, ge=1)
    # The share of the rate bulk work can never take while a realtime call waits.
    realtime_share: float = Field(default=0.2, ge=0, lt=1)
    # A worker waits at most this long for a slot; a longer wait goes back to the queue.
    max_wait_seconds: float = Field(default=2.0, ge=0, le=30)
    # fixed: on a 429 the rate is multiplied by this (once per hold), down to floor_share of
    # it (adaptive: down to floor_share of per_minute, the start).
    decrease_factor: float = Field(default=0.5, gt=0, lt=1)
    floor_share: float = Field(default=0.1, gt=0, le=1)
    # Seconds without a 429 for the rate to climb back from the floor to the ceiling.
    recovery_seconds: float = Field(default=60.0, gt=0)
    # adaptive: until the first 429 the rate doubles every this many busy seconds ...
    slow_start_doubling_seconds: float = Field(default=20.0, gt=0)
    # ... then grows by this share of the rate set at the last cut, per busy second.
    increase_share: float = Field(default=0.0025, gt=0, le=1)
    # adaptive: the first 429 of a hold cuts the rate to this share of itself, or to
    # estimate_margin x the rate the provider accepted since the previous 429 when that one
    # came at most estimate_window_seconds ago (both 429s mean its bucket was empty).
    adaptive_decrease_factor: float = Field(default=0.9, gt=0, lt=1)
    estimate_window_seconds: float = Field(default=300.0, gt=0)
    estimate_margin: float = Field(default=0.95, gt=0, le=1)
    key_prefix: str = "passsync:ratelimit"

    @model_validator(mode="after")
    def _ceiling_not_below_start(self) -> RateLimitSettings:
        if self.max_per_minute is not None and self.max_per_minute < self.per_minute:
            raise ValueError("ratelimit.max_per_minute must be at least ratelimit.per_minute")
        return self

    @property
    def ceiling_per_minute(self) -> int:
        """The most the limiter ever grants: per_minute (fixed) or the adaptive ceiling."""
        if self.mode == "fixed":
            return self.per_minute
        return self.max_per_minute if self.max_per_minute is not None else 4 * self.per_minute


class CampaignSettings(_Strict):
    """Bulk issuance campaigns (see README, "Campaigns")."""

    # Recipients per bulk task.
    chunk_size: int = Field(default=100, ge=1, le=10_000)
    # Chunks queued or running at once per campaign (bounds the broker's bulk queue).
    max_queued_chunks: int = Field(default=8, ge=1, le=1000)
    # A chunk task hands its unstarted recipients back after this long, so a pool shared
    # with realtime work frees a process often.
    chunk_max_seconds: float = Field(default=2.0, gt=0)
    # How often beat runs the dispatcher (starts, ends, top-ups, recovery).
    tick_seconds: float = Field(default=1.0, gt=0)
    # A queued or started recipient untouched this long (lost message, killed worker) is
    # handed out again; the ledger and the engine keep it exactly-once.
    requeue_after_seconds: float = Field(default=60.0, gt=0)
    # Rows per batch while importing a file (one COPY on Postgres; memory stays flat whatever
    # the file size).
    import_batch_rows: int = Field(default=10_000, ge=1, le=10_000)
    # Body limit of POST /api/campaigns/{id}/recipients (streamed NDJSON); every other route
    # has api.max_body_bytes.
    max_import_bytes: int = Field(default=1_073_741_824, ge=1024)


class AuditSettings(_Strict):
    """The audit log of provider calls: how long rows are kept and how often they are purged."""

    retention_days: int = Field(default=90, ge=0)  # 0 keeps rows forever
    purge_interval_seconds: float = Field(default=3600.0, gt=0)


# A sender may resend an event (a callback, a scan) for days: Stripe retries for three days,
# most others for hours. A dedup ledger row is never purged sooner than this.
RETENTION_MIN_DEDUP_DAYS = 3


class RetentionSettings(_Strict):
    """How long finished rows are kept (days; 0 keeps them forever) and how beat purges them.

    Only finished rows go: handled or ignored ledger events, outbox events delivered to every
    destination, adoption callbacks, and accepted, rejected or unknown scans. The dedup
    ledgers (inbound events, adoption callbacks, scans) answer a resent id as a duplicate only
    while its row exists, so their windows are at least RETENTION_MIN_DEDUP_DAYS (README,
    "Retention").
    """

    enabled: bool = True
    inbound_days: int = Field(default=30, ge=0)
    outbox_days: int = Field(default=30, ge=0)
    adoption_days: int = Field(default=90, ge=0)
    scans_days: int = Field(default=90, ge=0)
    # Rows per DELETE, each its own short transaction, and the pause after each one (the
    # receiver's commits and the workers' writes get the database in between): the purge
    # paces itself from its own cost, batches taking at most `duty_cycle` of the wall time
    # (a batch that took 10 ms is followed by 10 ms * (1 - duty) / duty), and never less
    # than `pause_seconds` apart.
    batch_size: int = Field(default=500, ge=1, le=50_000)
    pause_seconds: float = Field(default=0.02, ge=0, le=60)
    duty_cycle: float = Field(default=0.25, gt=0, le=1)
    # How often beat starts a purge, and how long one may run (the rest waits for the next).
    interval_seconds: float = Field(default=3600.0, gt=0)
    max_seconds: float = Field(default=30.0, gt=0)

    @field_validator("inbound_days", "adoption_days", "scans_days")
    @classmethod
    def _dedup_floor(cls, days: int) -> int:
        if 0 < days < RETENTION_MIN_DEDUP_DAYS:
            raise ValueError(
                f"must be 0 (keep forever) or at least {RETENTION_MIN_DEDUP_DAYS} days: a "
                "purged row no longer answers a resent id as a duplicate"
            )
        return days


OUTBOUND_EVENT_TYPES = (
    "pass.issued",
    "pass.updated",
    "pass.voided",
    "pass.deleted",
    "pass.installed",
    "pass.removed",
    "pass.used",
    "event.failed",
)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class DestinationSettings(_Strict):
    """A receiver of outbound events; its secret comes from
    PASSSYNC_OUTBOUND__DESTINATIONS__<NAME>__SECRET (a `whsec_` Standard Webhooks secret)."""

    url: str
    event_types: list[str] = list(OUTBOUND_EVENT_TYPES)
    secret: SecretStr
    # Plain http is refused except to a loopback host, unless this is set (e.g. a private
    # network): the payloads carry customer ids and pass links.
    allow_http: bool = False

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(OUTBOUND_EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {list(OUTBOUND_EVENT_TYPES)}")
        return value

    @model_validator(mode="after")
    def _check_url(self) -> DestinationSettings:
        # Checked at start-up (every process loads the settings), not at the first delivery.
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http(s) URL")
        if parts.username or parts.password or parts.fragment:
            raise ValueError("url must not carry credentials or a fragment")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS and not self.allow_http:
            raise ValueError("url must use https (or set allow_http for a private network)")
        return self


class OutboundSettings(_Strict):
    """Signed outbound events to the CRM (see README, "Outbound events")."""

    destinations: dict[str, DestinationSettings] = {}
    # Waits before each retry (Standard Webhooks' recommendation after the first attempt);
    # when they run out the delivery is given up. Each is jittered by +/- `jitter`.
    retry_schedule_seconds: list[float] = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    jitter: float = Field(default=0.2, ge=0, lt=1)
    timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # How often beat looks for due deliveries (a commit that emits also kicks a delivery).
    poll_seconds: float = Field(default=2.0, gt=0)
    # Deliveries claimed per round, and posted in parallel.
    batch_size: int = Field(default=50, ge=1, le=1000)
    parallel: int = Field(default=8, ge=1, le=64)
    # A claimed delivery whose worker died is claimed again after this long.
    lease_seconds: float = Field(default=120.0, gt=0)
    # A Retry-After longer than this is cut to it.
    max_retry_after_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("destinations")
    @classmethod
    def _names(cls, value: dict[str, DestinationSettings]) -> dict[str, DestinationSettings]:
        for key in value:
            if not NAME_RE.match(key):
                raise ValueError(f"destination name {key!r} must match {NAME_RE.pattern}")
        return value

    @field_validator("retry_schedule_seconds")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if any(wait < 0 for wait in value):
            raise ValueError("waits must not be negative")
        return value

    @model_validator(mode="after")
    def _lease_covers_a_request(self) -> OutboundSettings:
        if self.lease_seconds <= self.timeout_seconds + self.connect_timeout_seconds:
            raise ValueError("lease_seconds must exceed timeout_seconds + connect_timeout_seconds")
        return self


class UsageRule(_Strict):
    """What a valid scan of one pass key does (see README, "Scans and usage")."""

    pass_key: str = Field(min_length=1, max_length=64)
    # redeem: a single-use coupon, voided after its first valid scan; visit: a loyalty card
    # counting visits (and points); record: the scan is only recorded as use.
    mode: Literal["redeem", "visit", "record"] = "record"
    visits_field: str | None = "visits"
    points_field: str | None = None
    points_per_amount: float = Field(default=0.0, ge=0)
    # Follow-ups after a valid use: a push message (`{location}` is filled in) and the
    # signed outbound event pass.used to the outbound destinations that take it.
    push: str | None = None
    webhook: bool = True


class UsageSettings(_Strict):
    """Scans as pass usage: one rule per pass key."""

    rules: list[UsageRule] = []


class CallbackSettings(_Strict):
    """Provider callbacks at POST /providers/{account}/callbacks (one URL per account)."""

    # Public base URL of the API; passsync subscribes `<public_url>/providers/<account>/
    # callbacks?token=<secret>` at each platform that can subscribe (the URL token is required
    # because not every platform signs its callbacks).
    public_url: str | None = None
    secret: SecretStr | None = None
    # Events to subscribe; empty: each platform's own list of the events passsync tracks.
    events: list[str] = []


class CredentialSettings(_Strict):
    """Provider credentials besides the environment, and how a rotation reaches every process
    (see README, "Accounts and credentials")."""

    # A file of `PASSSYNC_PROVIDERS__<ACCOUNT>__<FIELD>=value` lines (the accounts' secret
    # fields only), mode 0600 or stricter; its values win over the environment's, and
    # `passsync accounts rotate` (or SIGHUP) makes every process read it again.
    secrets_file: Path | None = None
    # How often a process looks at the fleet's credential generation (in the shared Redis).
    reload_check_seconds: float = Field(default=2.0, gt=0, le=300)
    # After the provider refuses an account's credential (401/403), this process makes no
    # call on that account for this long unless a rotation comes first (no 401 storm).
    refused_hold_seconds: float = Field(default=5.0, ge=0, le=600)
    # A client replaced by a rotation is closed this long after (its calls have ended).
    retire_after_seconds: float = Field(default=300.0, ge=0)
    # The Redis key of the generation counter (the Redis of ratelimit.redis_url or the broker).
    generation_key: str = "passsync:credentials:generation"


class ReconcileSettings(_Strict):
    """The scheduled comparison of the provider's passes with the pass mappings."""

    enabled: bool = False
    repair: Literal["report", "repair"] = "report"
    interval_seconds: float = Field(default=3600.0, gt=0)
    # Passes read per run; the cursor in SQL continues where the last run stopped.
    passes_per_run: int = Field(default=500, ge=1)


class McpSettings(_Strict):
    """`passsync mcp`: the provider actions as tools for agents (Model Context Protocol)."""

    # Write tools (create, update, delete, void) are hidden and refused unless this is on.
    allow_writes: bool = False


class MetricsSettings(_Strict):
    """Prometheus metrics (see README, "Operations")."""

    # Off: nothing is counted and /metrics answers 404 (the benchmark's baseline).
    enabled: bool = True
    # Each `passsync worker` serves its pool's metrics on this port (0: none).
    worker_port: int = Field(default=9108, ge=0, le=65535)
    # Where forked processes keep their counters (multiprocess mode); default <data_dir>/metrics.
    multiproc_dir: Path | None = None


class LoggingSettings(_Strict):
    """Log lines: `json` (one object a line, the images' default) or `console` (for people)."""

    format: Literal["json", "console"] = "console"
    # celery, kombu, httpx, uvicorn, ...: only their warnings unless lowered here.
    third_party_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"


class TracingSettings(_Strict):
    """OpenTelemetry traces (needs the `otel` extra); off by default."""

    enabled: bool = False
    service_name: str = "passsync"
    # OTLP/HTTP endpoint; none prints spans to the log instead (the console exporter).
    otlp_endpoint: str | None = None


class Settings(BaseSettings):
    """The one settings object; build it with load_settings() and pass it in."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    database_url: str = "sqlite:///.passsync/passsync.db"
    broker_url: str = "embedded"
    data_dir: Path = Path(".passsync")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    api: ApiSettings = ApiSettings()
    # Wallet-platform accounts by name: `{<name>: {kind: <kind>, ...that kind's settings}}`;
    # secrets per account from PASSSYNC_PROVIDERS__<NAME>__API_KEY. Default: one account of
    # the first registered kind, named after it (see README, "Providers and accounts").
    providers: dict[str, SerializeAsAny[AccountSettings]] = {}
    sources: dict[str, SourceSettings] = {"crm": SourceSettings()}
    admin_tokens: dict[str, AdminToken] = {}
    sync: SyncSettings = SyncSettings()
    celery: CelerySettings = CelerySettings()
    audit: AuditSettings = AuditSettings()
    retention: RetentionSettings = RetentionSettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    campaigns: CampaignSettings = CampaignSettings()
    mcp: McpSettings = McpSettings()
    outbound: OutboundSettings = OutboundSettings()
    usage: UsageSettings = UsageSettings()
    callbacks: CallbackSettings = CallbackSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    credentials: CredentialSettings = CredentialSettings()
    # Before named accounts: the sandbox of the (only) account of the first registered kind.
    # Still read (PASSSYNC_SANDBOX__*), and merged over that account's `sandbox:`.
    sandbox: dict[str, Any] = {}

    @field_validator("sources", "admin_tokens")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not NAME_RE.match(key):
                raise ValueError(f"name {key!r} must match {NAME_RE.pattern}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _accounts(cls, data: Any) -> Any:
        """Today's config shape keeps working: `providers: {<kind>: {...}}` is an account
        named after its kind; a `user_provided_id_prefix` there is `sync.external_id_prefix`;
        a top-level `sandbox:` is laid over the sandbox of the account(s) of the first
        registered kind."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        raw = data.get("providers")
        providers = {str(k): dict(v or {}) for k, v in raw.items()} if raw else {}
        if not providers:
            providers = {registry.default_kind(): {}}
        sync = dict(data.get("sync") or {})
        for conf in providers.values():
            prefix = conf.pop("user_provided_id_prefix", None)
            if prefix is not None:
                sync.setdefault("external_id_prefix", prefix)
        legacy_provider = sync.get("provider")
        if isinstance(legacy_provider, str) and legacy_provider in providers:
            sync.setdefault("default_account", legacy_provider)
        legacy_sandbox = data.get("sandbox")
        if legacy_sandbox:
            for name, conf in providers.items():
                if (conf.get("kind") or name) == registry.default_kind():
                    conf["sandbox"] = {**dict(conf.get("sandbox") or {}), **dict(legacy_sandbox)}
        data["providers"] = providers
        if sync:
            data["sync"] = sync
        return data

    @field_validator("providers", mode="plain")
    @classmethod
    def _account_settings(cls, value: Any) -> dict[str, AccountSettings]:
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of account name -> {kind: ..., ...}")
        for key in value:
            if not ACCOUNT_RE.match(str(key)):
                raise ValueError(f"account name {key!r} must match {ACCOUNT_RE.pattern}")
        return registry.validate_accounts(value)

    @model_validator(mode="after")
    def _default_account(self) -> Settings:
        chosen = self.sync.default_account
        if chosen is None:
            self.sync.default_account = next(iter(self.providers))
        elif chosen not in self.providers:
            raise ValueError(
                f"sync.default_account {chosen!r} is not an account under providers: "
                f"{', '.join(self.providers)}"
            )
        return self

    @model_validator(mode="after")
    def _base_url_needs_credentials(self) -> Settings:
        # An account pointed at a host on purpose must never fall back to the local sandbox.
        for name, conf in self.providers.items():
            kind = registry.get_kind(conf.kind)
            if "base_url" in conf.model_fields_set and not kind.has_credentials(conf):
                env = f"{ENV_PREFIX}PROVIDERS__{name.upper()}__API_KEY"
                raise registry.AccountSettingsError(
                    ("providers", name, "base_url"),
                    f"is set but the account has no API key ({env}): set the key, or remove "
                    "the base URL to use the local sandbox",
                )
        return self

    @model_validator(mode="after")
    def _limiter_needs_redis(self) -> Settings:
        # The shared limiter is a Redis script: an AMQP broker cannot hold its budget.
        scheme = self.broker_url.split("://", 1)[0]
        amqp = scheme in ("amqp", "amqps", "pyamqp")
        if amqp and self.ratelimit.enabled and not self.ratelimit.redis_url:
            raise ValueError(
                "ratelimit.redis_url (PASSSYNC_RATELIMIT__REDIS_URL) is required with an "
                "amqp:// broker: the shared rate limiter keeps its budget in Redis"
            )
        return self

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url == "embedded"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The secrets file wins over the environment: it is what can change under running
        # processes (`passsync accounts rotate`), their environment cannot.
        return (
            init_settings,
            _SecretsFileSource(settings_cls),
            env_settings,
            _YamlSource(settings_cls),
        )


class _YamlSource(PydanticBaseSettingsSource):
    """config.yaml (or the file PASSSYNC_CONFIG names), below the environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ is used instead

    def __call__(self) -> dict[str, Any]:
        return read_config_file(config_path())


class _SecretsFileSource(PydanticBaseSettingsSource):
    """The provider credentials in `credentials.secrets_file`, above the environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ is used instead

    def __call__(self) -> dict[str, Any]:
        path = secrets_file_path()
        if path is None:
            return {}
        accounts: dict[str, dict[str, str]] = {}
        for (account, name), value in read_secrets_file(path).items():
            accounts.setdefault(account, {})[name] = value
        return {"providers": accounts}


SECRETS_FILE_ENV = ENV_PREFIX + "CREDENTIALS__SECRETS_FILE"
_SECRET_LINE = re.compile(r"^PASSSYNC_PROVIDERS__([A-Z0-9_]+?)__([A-Z0-9_]+)$")


def secrets_file_path() -> Path | None:
    """`credentials.secrets_file`: from the environment, else from the config file."""
    for key, value in os.environ.items():
        if key.upper() == SECRETS_FILE_ENV and value:
            return Path(value)
    section = read_config_file(config_path()).get("credentials")
    named = section.get("secrets_file") if isinstance(section, dict) else None
    return Path(str(named)) if named else None


def read_secrets_file(path: Path) -> dict[tuple[str, str], str]:
    """(account, field) -> value from a secrets file; ConfigError (one line, never a value)
    when it is missing, readable by others than its owner, or has a line that is not
    `PASSSYNC_PROVIDERS__<ACCOUNT>__<FIELD>=value` for a secret field of some platform."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ConfigError(
                f"secrets file {path} has mode {mode & 0o777:04o}: it must be readable by its "
                f"owner only (chmod 600 {path})"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"secrets file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"secrets file {path}: not UTF-8 text") from None
    allowed = {f for kind in registry.kinds() for f in registry.get_kind(kind).secret_fields}
    found: dict[tuple[str, str], str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        match = _SECRET_LINE.match(key.strip().upper())
        where = f"secrets file {path} line {number}"
        if not sep or match is None:
            raise ConfigError(
                f"{where}: expected PASSSYNC_PROVIDERS__<ACCOUNT>__<FIELD>=value "
                f"(<FIELD> one of {', '.join(sorted(f.upper() for f in allowed))})"
            )
        account, name = match.group(1).lower(), match.group(2).lower()
        if name not in allowed:
            raise ConfigError(
                f"{where}: {name.upper()} is not a secret setting; the file holds only "
                f"{', '.join(sorted(f.upper() for f in allowed))} (other settings: config.yaml)"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value:  # an empty value is as if the line were absent
            found[(account, name)] = value
    return found


def config_path() -> Path | None:
    """The config file in force: PASSSYNC_CONFIG, else ./config.yaml when it exists."""
    named = os.environ.get(ENV_PREFIX + "CONFIG")
    if named:
        return Path(named)
    default = Path("config.yaml")
    return default if default.exists() else None


def read_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({exc})".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    _refuse_secrets(data, path, ())
    return data


def _refuse_secrets(node: Any, path: Path, trail: tuple[str, ...]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*trail, str(key))
            if str(key).lower() in SECRET_KEYS and value not in (None, ""):
                env = ENV_PREFIX + "__".join(part.upper() for part in here)
                where = " (or a line of the secrets file)" if here[0] == "providers" else ""
                raise ConfigError(
                    f"{'.'.join(here)} in {path}: secrets come only from the environment; "
                    f"set {env} instead{where}"
                )
            _refuse_secrets(value, path, here)


# PASSSYNC_ variables read by other parts than the settings (the CLI, the test suite, benches).
NON_SETTING_VARIABLES = frozenset({"CONFIG", "TOKEN", "ACCOUNT", "REQUIRE_SERVICES"})
NON_SETTING_PREFIXES = ("TEST_", "BENCH_")


def check_environment(environ: Mapping[str, str]) -> None:
    """A PASSSYNC_ variable that names no setting stops start-up (ConfigError): one line with
    the variable and the closest setting. Typos inside a section fail in validation."""
    sections = list(Settings.model_fields)
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        rest = upper[len(ENV_PREFIX) :]
        if rest in NON_SETTING_VARIABLES or rest.startswith(NON_SETTING_PREFIXES):
            continue
        section, _, tail = rest.partition("__")
        if section.lower() in sections:
            continue
        close = difflib.get_close_matches(section.lower(), sections, n=1, cutoff=0.5)
        hint = ""
        if close:
            suggestion = ENV_PREFIX + close[0].upper() + (f"__{tail}" if tail else "")
            hint = f"; did you mean {suggestion} (setting {close[0]})?"
        raise ConfigError(f"environment variable {key} names no setting{hint}")


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once; any problem becomes a ConfigError naming the setting."""
    check_environment(os.environ)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, registry.AccountSettingsError):
            first = {**first, "loc": cause.loc, "msg": cause.msg}
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        env = ENV_PREFIX + "__".join(str(part).upper() for part in first["loc"])
        raise ConfigError(f"setting {where} ({env}): {first['msg']}") from None


def settings_reference() -> list[tuple[str, str, str, str]]:
    """(setting, default, environment variable, description) for every leaf setting."""
    rows: list[tuple[str, str, str, str]] = []
    _walk(Settings, (), Settings.model_construct(), rows)
    return rows


def _walk(model: type[BaseModel], trail: tuple[str, ...], instance: Any, rows: list[Any]) -> None:
    for name, info in model.model_fields.items():
        here = (*trail, name)
        value = getattr(instance, name, info.default) if instance is not None else info.default
        args: tuple[Any, ...] = getattr(info.annotation, "__args__", ())
        if model is Settings and name == "providers":
            # One block per registered kind: the settings of an account of that kind.
            for kind in registry.kinds():
                kind_model = registry.settings_model(kind)
                _walk(kind_model, (*here, f"<{kind}>"), kind_model.model_construct(kind=kind), rows)
        elif isinstance(value, BaseModel):
            _walk(type(value), here, value, rows)
        elif isinstance(value, dict) and len(args) == 2 and _is_model(args[1]):
            _walk(args[1], (*here, "<name>"), None, rows)
        elif isinstance(value, list) and len(args) == 1 and _is_model(args[0]):
            # A list of structures (sync.rules) is documented in its own README section.
            rows.append((".".join(here), "(see README)", _env_name(here), ""))
        else:
            rows.append((".".join(here), _show(name, value, here), _env_name(here), ""))


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _show(name: str, value: Any, trail: tuple[str, ...] = ()) -> str:
    if isinstance(value, SecretStr):  # a built-in default is public (the sandbox's key)
        return value.get_secret_value()
    if name in SECRET_KEYS:
        if trail[:1] == ("providers",):
            return "(secret: environment or secrets file)"
        return "(secret, environment only)"
    if value is PydanticUndefined:
        return "(required)"
    if isinstance(value, Path):
        return str(value)
    return "(none)" if value is None else repr(value) if isinstance(value, str) else str(value)


def _env_name(trail: tuple[str, ...]) -> str:
    return ENV_PREFIX + "__".join(part.upper() for part in trail)


def settings_table() -> str:
    """The README's settings table (kept in step by tests/test_readme.py)."""
    lines = ["| Setting | Default | Environment variable |", "|---|---|---|"]
    for path, default, env, _ in settings_reference():
        shown = default.replace("|", "\\|")
        lines.append(f"| `{path}` | `{shown}` | `{env}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
