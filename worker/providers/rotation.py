"""Credential rotation without a restart and without losing in-flight work.

`passsync accounts rotate` adds one to the fleet's credential generation (a counter in the
shared Redis); SIGHUP to any passsync process does the same. Every process looks at the
counter at most every `credentials.reload_check_seconds` (and at once when the provider
refuses a credential); on a new generation it loads its settings again (environment, secrets
file, config) and replaces, in place, the settings of each account whose settings changed.

A `RotatingProvider` notices that replacement at its next call and builds a new client from
the new settings. A call that has already started finishes with the client it started with
(the old credential); the old client is closed `credentials.retire_after_seconds` later. A
credential the provider refuses (401/403) puts the account on hold in this process for
`credentials.refused_hold_seconds`: calls fail fast with `CredentialRefusedError` (transient:
the event or recipient is retried, never lost) instead of sending a storm of refused calls.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from worker.brokers import SOCKET_SCHEME, redis_client
from worker.providers.credentials import CredentialRefusedError, is_refused_key
from worker.providers.errors import RejectedError
from worker.providers.port import AccountSettings, ClosableProvider, ProviderPass, ProviderTemplate

if TYPE_CHECKING:  # pragma: no cover
    from worker.config import Settings

log = logging.getLogger("passsync.credentials")
T = TypeVar("T")

# SIGHUPs this process received (a handler may only touch plain values).
_local_requests = 0


def request_reload() -> None:
    """Make this process's reloaders load the credentials again at their next look."""
    global _local_requests  # noqa: PLW0603 - one counter per process, bumped by a handler
    _local_requests += 1


def shared_redis_url(settings: Settings) -> str | None:
    """The Redis every process of the fleet sees (the limiter's, else the broker), or None."""
    url = settings.ratelimit.redis_url or settings.broker_url
    return url if url.startswith(("redis://", "rediss://", SOCKET_SCHEME)) else None


def read_generation(settings: Settings) -> int:
    """The fleet's credential generation (0 before the first rotation); raises on a Redis
    error, ValueError without a shared Redis."""
    url = shared_redis_url(settings)
    if url is None:
        raise ValueError("no shared Redis (ratelimit.redis_url or a redis:// broker_url)")
    client = redis_client(url)
    try:
        value = client.get(settings.credentials.generation_key)
    finally:
        client.close()
    return int(value or 0)


def bump_generation(settings: Settings) -> int:
    """Start a new credential generation: every process of the fleet reloads; the new number."""
    url = shared_redis_url(settings)
    if url is None:
        raise ValueError(
            "no shared Redis to tell the other processes (set ratelimit.redis_url, or use a "
            "redis:// broker); send SIGHUP to each passsync process instead"
        )
    client = redis_client(url)
    try:
        return int(client.incr(settings.credentials.generation_key))
    finally:
        client.close()


class CredentialReloader:
    """One per process and settings object: keeps `settings.providers` current.

    `refresh()` is cheap (a clock comparison) between looks at the shared generation; the
    look itself is one Redis GET. A failed reload (an invalid secrets file, a Redis error)
    keeps the credentials in use and is logged in one line (never a value).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        load: Callable[[], Settings] | None = None,
        read: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._load = load or _load_settings
        if read is None and shared_redis_url(settings) is not None:
            read = lambda: read_generation(settings)  # noqa: E731
        self._read = read
        self._clock = clock
        self._interval = settings.credentials.reload_check_seconds
        self._lock = threading.Lock()
        self._shared = self._read_shared(None)
        self._local = _local_requests
        self._checked_at = clock()
        self.reloads = 0  # reloads done (for tests and logs)

    @property
    def generation(self) -> int | None:
        """The last fleet generation seen (None: no shared Redis, or not read yet)."""
        return self._shared

    def _read_shared(self, previous: int | None) -> int | None:
        if self._read is None:
            return None
        try:
            return self._read()
        except Exception as exc:  # Redis away: keep what we have, look again later
            log.warning(
                "credential generation not read (%s); keeping the credentials in use",
                type(exc).__name__,
            )
            return previous

    def refresh(self, *, force: bool = False) -> bool:
        """Look for a rotation (at most every reload_check_seconds unless `force`, at once
        after a SIGHUP); reload the accounts' settings on a new one. Whether it reloaded."""
        now = self._clock()
        if not force and _local_requests == self._local and now - self._checked_at < self._interval:
            return False
        with self._lock:
            local = _local_requests
            shared = self._read_shared(self._shared)
            self._checked_at = self._clock()
            if shared == self._shared and local == self._local:
                return False
            self._shared, self._local = shared, local
            self._reload()
            return True

    def _reload(self) -> None:
        try:
            fresh = self._load()
        except Exception as exc:
            log.error("credentials not reloaded, the ones in use stay: %s", _one_line(exc))
            return
        changed: list[str] = []
        for name, conf in fresh.providers.items():
            old = self.settings.providers.get(name)
            if old is None:
                log.warning("account %r is new in the settings: it needs a restart", name)
            elif old != conf:
                self.settings.providers[name] = conf  # RotatingProviders see it at their next call
                changed.append(name)
        self.reloads += 1
        log.info(
            "credentials reloaded (generation %s): %s",
            self._shared,
            ", ".join(changed) + " changed" if changed else "no account changed",
        )


def _load_settings() -> Settings:
    from worker.config import load_settings  # noqa: PLC0415 - config imports the registry

    return load_settings()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class RotatingProvider:
    """One account's client, rebuilt when the reloader replaces the account's settings; a
    refused credential holds the account in this process (see the module docstring)."""

    def __init__(
        self,
        reloader: CredentialReloader,
        account: str,
        build: Callable[[AccountSettings], ClosableProvider],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reloader = reloader
        self._account = account
        self._build = build
        self._clock = clock
        self._lock = threading.Lock()
        self._conf = reloader.settings.providers[account]
        self._client = build(self._conf)
        self.name = self._client.name
        self._retired: list[tuple[float, ClosableProvider]] = []
        self._hold_until = 0.0
        self.rebuilds = 0

    @property
    def client(self) -> ClosableProvider:
        """The client the next call uses (after looking for a rotation)."""
        self._reloader.refresh()
        conf = self._reloader.settings.providers.get(self._account)
        if conf is not None and conf is not self._conf:
            with self._lock:
                if conf is not self._conf:
                    self._swap(conf)
        return self._client

    def _swap(self, conf: AccountSettings) -> None:
        self._conf = conf  # a client that cannot be built is not retried at every call
        try:
            client = self._build(conf)
        except Exception as exc:
            log.error("account %r: new credentials not used: %s", self._account, _one_line(exc))
            return
        now = self._clock()
        self._retired.append((now, self._client))
        self._client, self._hold_until = client, 0.0
        self.rebuilds += 1
        self._close_retired(now)

    def _close_retired(self, now: float) -> None:
        grace = self._reloader.settings.credentials.retire_after_seconds
        keep = []
        for since, old in self._retired:
            if now - since >= grace:
                _close_quietly(old)
            else:
                keep.append((since, old))
        self._retired = keep

    def _call(self, call: Callable[[ClosableProvider], T]) -> T:
        client = self.client
        held = self._hold_until - self._clock()
        if held > 0:
            raise CredentialRefusedError(self._account, None, retry_after=held)
        try:
            return call(client)
        except RejectedError as exc:
            if not is_refused_key(exc):
                raise
            refused = exc
        # A rotation this process has not seen yet? Look now, and use it for one more try
        # (a refused call changed nothing at the provider).
        if self._reloader.refresh(force=True):
            fresh = self.client
            if fresh is not client:
                try:
                    return call(fresh)
                except RejectedError as exc:
                    if not is_refused_key(exc):
                        raise
                    refused = exc
        hold = self._reloader.settings.credentials.refused_hold_seconds
        self._hold_until = self._clock() + hold
        log.warning(
            "account %r: the provider refused the credential (HTTP %s); its calls wait for "
            "a rotation (passsync accounts rotate)",
            self._account,
            refused.status,
        )
        raise CredentialRefusedError(self._account, refused.status, retry_after=hold) from None

    # -- the port, and a kind's own calls (same signatures as the current client's) ----------

    def create_pass(self, *args: Any, **kwargs: Any) -> ProviderPass:
        return self._call(lambda c: c.create_pass(*args, **kwargs))

    def update_pass(self, *args: Any, **kwargs: Any) -> ProviderPass:
        return self._call(lambda c: c.update_pass(*args, **kwargs))

    def get_pass(self, *args: Any, **kwargs: Any) -> ProviderPass:
        return self._call(lambda c: c.get_pass(*args, **kwargs))

    def list_templates(self, *args: Any, **kwargs: Any) -> list[ProviderTemplate]:
        return self._call(lambda c: c.list_templates(*args, **kwargs))

    def set_voided(self, *args: Any, **kwargs: Any) -> ProviderPass:
        return self._call(lambda c: c.set_voided(*args, **kwargs))

    def delete_pass(self, *args: Any, **kwargs: Any) -> None:
        self._call(lambda c: c.delete_pass(*args, **kwargs))

    def send_push(self, *args: Any, **kwargs: Any) -> None:
        self._call(lambda c: c.send_push(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        # A kind's own calls (actions, catalogs) go to the current client, through the hold.
        if name.startswith("_"):
            raise AttributeError(name)
        found = getattr(self.client, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(lambda c: getattr(c, name)(*args, **kwargs))

        return call

    def close(self) -> None:
        with self._lock:
            for _since, old in self._retired:
                _close_quietly(old)
            self._retired = []
            _close_quietly(self._client)


def _close_quietly(client: ClosableProvider) -> None:
    try:
        client.close()
    except Exception as exc:  # a pool that will not close must not stop the caller
        log.warning("closing a retired provider client failed: %s", type(exc).__name__)


def install_sighup(settings: Settings) -> None:
    """SIGHUP in this process: reload here at once, and tell the fleet (bump the shared
    generation, from a thread: a signal handler must not do network I/O)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        request_reload()
        threading.Thread(target=_tell_fleet, args=(settings,), daemon=True).start()

    signal.signal(signal.SIGHUP, handler)


def _tell_fleet(settings: Settings) -> None:
    try:
        generation = bump_generation(settings)
    except Exception as exc:
        log.warning("SIGHUP: only this process reloads its credentials (%s)", _one_line(exc))
        return
    log.info("SIGHUP: credential generation %s: every process reloads", generation)
