"""Per-process resources for tasks (settings, database, provider), built lazily after fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from worker.audit import Actor, AuditRecorder, acting_as
from worker.brokers import SOCKET_SCHEME, redis_client
from worker.config import Settings, load_settings
from worker.db import Database
from worker.observability import metrics, tracing
from worker.providers import registry
from worker.providers.port import AccountSettings, ClosableProvider, PassProvider
from worker.providers.rotation import CredentialReloader, RotatingProvider
from worker.ratelimit.pacing import LocalPacer, Pacer, RedisPacer
from worker.ratelimit.provider import limited
from worker.sync.engine import SyncContext
from worker.sync.templates import TemplateResolver


@dataclass
class Runtime:
    settings: Settings
    db: Database
    sync: SyncContext
    audit: AuditRecorder | None = None
    pacer: Pacer | None = None  # when each customer's event may run (None: coalescing off)
    # Keeps settings.providers current after `passsync accounts rotate` (None: tests).
    credentials: CredentialReloader | None = None

    @contextmanager
    def holding_audit(self) -> Iterator[None]:
        """Keep the block's audit rows in memory, written in one transaction at its end (a
        group's calls); open it outside the session, as `audited`."""
        if self.audit is None:
            yield
            return
        with self.audit.batch(hold=True):
            yield

    @contextmanager
    def audited(self, actor: Actor) -> Iterator[None]:
        """Attribute the block's provider calls to `actor`; open it outside the session, so
        buffered audit rows are written after its transaction commits or rolls back."""
        with acting_as(actor):
            if self.audit is None:
                yield
                return
            with self.audit.batch():
                yield


_lock = threading.Lock()
_state: dict[int, Runtime] = {}


def get_runtime() -> Runtime:
    """The current process's runtime; a forked child builds its own (no shared sockets)."""
    pid = os.getpid()
    with _lock:
        runtime = _state.get(pid)
        if runtime is None:
            settings = load_settings()
            metrics.set_enabled(settings.metrics.enabled)
            if not tracing.enabled():  # a pool child: its own exporter thread, after the fork
                tracing.setup_tracing(settings.tracing)
            # One connection per group thread, and one for the lease renewals.
            db = Database(settings.database_url, pool_size=settings.sync.group_concurrency + 1)
            default = registry.account(settings).name
            audit = AuditRecorder(db, provider=default)
            reloader = CredentialReloader(settings)
            connect = _connector(settings, audit, reloader)
            provider, templates = connect(default)
            runtime = Runtime(
                settings=settings,
                db=db,
                sync=SyncContext(settings, provider, templates, connect=connect, account=default),
                audit=audit,
                pacer=build_pacer(settings),
                credentials=reloader,
            )
            _state.clear()
            _state[pid] = runtime
    if runtime.credentials is not None:
        # Cheap between looks (a clock comparison); keeps settings.providers current for the
        # code that builds its own clients from the settings (reconciliation).
        runtime.credentials.refresh()
    return runtime


def _connector(
    settings: Settings, audit: AuditRecorder, reloader: CredentialReloader
) -> Callable[[str], tuple[PassProvider, TemplateResolver]]:
    """Builds one account's client (audited with the account, under the account's own budget
    in the fleet limiter: every call of every task takes a slot) and its own template cache.
    The client is rebuilt between calls after a credential rotation (worker.providers.rotation)."""

    def connect(account: str) -> tuple[PassProvider, TemplateResolver]:
        def build(conf: AccountSettings) -> ClosableProvider:
            chosen = registry.Account(account, registry.get_kind(conf.kind), conf)
            return chosen.build_client(audit.hook(account))

        client = RotatingProvider(reloader, account, build)
        provider = limited(settings, client, account)
        cache = settings.sync.template_cache_seconds
        return provider, TemplateResolver(provider, max_age_seconds=cache)

    return connect


def build_pacer(settings: Settings) -> Pacer | None:
    """The fleet's pacer on the shared Redis; in-process without one; None when off."""
    window = settings.sync.coalesce_window_ms / 1000
    if window <= 0:
        return None
    url = settings.ratelimit.redis_url or settings.broker_url
    if url.startswith(("redis://", "rediss://", SOCKET_SCHEME)):
        return RedisPacer(redis_client(url), f"{settings.ratelimit.key_prefix}:pace", window)
    return LocalPacer(window)


def set_runtime(runtime: Runtime) -> None:
    """Install a runtime (tests and in-process runs)."""
    with _lock:
        _state.clear()
        _state[os.getpid()] = runtime


def reset_runtime() -> None:
    """Forget this process's runtime; the next task builds it from the settings again."""
    with _lock:
        _state.clear()
