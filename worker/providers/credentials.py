"""Is an account's API key accepted? One cheap call (list the templates), its answer cached.

Used at worker start (`passsync worker`, `passsync run`), by `/readyz` and by `passsync doctor`:
a key the provider refuses (401/403) is reported as REFUSED, so a stack with a wrong key is not
"ready" and does not dead-letter every event at its first attempt. An unreachable provider is
UNAVAILABLE: events wait and retry, so it does not make a process unready.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

from worker.providers.errors import ProviderError, RejectedError

REFUSED_STATUSES = (401, 403)


class CredentialStatus(StrEnum):
    OK = "ok"
    REFUSED = "provider refused the API key"
    UNAVAILABLE = "unavailable"


def is_refused_key(exc: ProviderError) -> bool:
    """Whether a provider error says the credential itself is wrong."""
    return isinstance(exc, RejectedError) and exc.status in REFUSED_STATUSES


def check_credentials(probe: Callable[[], object]) -> CredentialStatus:
    """Run one cheap authenticated call (e.g. `provider.list_templates`) and classify it."""
    try:
        probe()
    except ProviderError as exc:
        return CredentialStatus.REFUSED if is_refused_key(exc) else CredentialStatus.UNAVAILABLE
    except Exception:  # a client bug or a socket error: not a verdict on the key
        return CredentialStatus.UNAVAILABLE
    return CredentialStatus.OK


class CachedCredentialCheck:
    """check_credentials at most once per `ttl_seconds` (readiness probes come often)."""

    def __init__(
        self,
        probe: Callable[[], object],
        *,
        ttl_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, CredentialStatus] | None = None

    def status(self) -> CredentialStatus:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last[0] < self._ttl:
                return self._last[1]
            result = check_credentials(self._probe)
            self._last = (now, result)
            return result
