"""Is an account's credential accepted? One cheap call (list the templates), its answer cached;
and the accounts overview of `passsync accounts list|check` and /api/accounts.

Used at worker start (`passsync worker`, `passsync run`), by `/readyz` and by `passsync doctor`:
a key the provider refuses (401/403) is reported as REFUSED, so a stack with a wrong key is not
"ready" and does not dead-letter every event at its first attempt. An unreachable provider is
UNAVAILABLE: events wait and retry, so it does not make a process unready.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from worker.providers import registry
from worker.providers.errors import ProviderError, RejectedError, TransientError
from worker.providers.port import ClosableProvider
from worker.providers.registry import Account

if TYPE_CHECKING:  # pragma: no cover
    from worker.config import Settings

REFUSED_STATUSES = (401, 403)


class CredentialStatus(StrEnum):
    OK = "ok"
    REFUSED = "provider refused the API key"
    UNAVAILABLE = "unavailable"


class CredentialRefusedError(TransientError):
    """The provider refuses an account's credential (401/403) in a running process: the work
    waits and is retried (a rotation may be on its way) instead of going to the dead letter
    at once. An event's tries count (a key that stays wrong ends in the dead letter after
    sync.max_attempts, with backoff); a campaign chunk waits `retry_after` like on a 429."""

    def __init__(self, account: str, status: int | None, *, retry_after: float = 0.0) -> None:
        shown = f" (HTTP {status})" if status else ""
        super().__init__(
            f"provider refused the credential of account {account!r}{shown}: waiting for a "
            "rotation (passsync accounts rotate)",
            status=status,
        )
        self.account = account
        self.retry_after = retry_after  # the rest of the account's hold in this process


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


# -- the accounts overview: `passsync accounts list|check`, /api/accounts ------------------------

CheckStatus = Literal["ok", "refused", "unavailable", "missing"]
Source = Literal["env", "file", "none"]


@dataclass(frozen=True)
class AccountReport:
    """One account as people see it: never a secret, nor any part or digest of one."""

    name: str
    kind: str
    title: str
    auth_scheme: str
    region: str | None
    source: Source  # where its secret settings come from
    has_credentials: bool
    token_expires_at: datetime | None = None
    status: CheckStatus | None = None  # None: not checked
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        expiry = self.token_expires_at
        data["token_expires_at"] = expiry.isoformat() if expiry is not None else None
        if self.status is None:
            del data["status"], data["detail"]
        return data


def credential_source(
    account: Account, file_keys: set[tuple[str, str]], environ: Mapping[str, str]
) -> Source:
    """Where the account's secret settings come from: the secrets file (which wins), the
    environment, or nowhere."""
    fields = account.kind.secret_fields
    if any((account.name, f) in file_keys for f in fields):
        return "file"
    prefix = f"PASSSYNC_PROVIDERS__{account.name.upper()}__"
    upper = {k.upper() for k, v in environ.items() if v}
    if any(prefix + f.upper() in upper for f in fields):
        return "env"
    return "none"


def describe_accounts(
    settings: Settings,
    *,
    check: bool = False,
    names: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[AccountReport]:
    """Every account (or the `names` given, UnknownAccountError otherwise), described; with
    `check`, one cheap authenticated call each (list the templates), one after another."""
    from worker.config import read_secrets_file  # noqa: PLC0415 - config imports the registry

    chosen = [registry.account(settings, n) for n in names] if names else None
    accounts = chosen or list(registry.accounts(settings).values())
    path = settings.credentials.secrets_file
    file_keys = set(read_secrets_file(path)) if path is not None else set()
    env = os.environ if environ is None else environ
    return [
        _report(account, credential_source(account, file_keys, env), check=check)
        for account in accounts
    ]


def _report(account: Account, source: Source, *, check: bool) -> AccountReport:
    status: CheckStatus | None = None
    detail = ""
    client: ClosableProvider | None = None
    try:
        if check and not account.has_credentials:
            hint = account.kind.credential_hint.replace("{ACCOUNT}", account.name.upper())
            status, detail = "missing", f"no credentials: {hint or 'set them'}"
        elif check:
            client = account.build_client()
            status, detail = probe(client.list_templates)
        info = account.describe_credential(client)
    finally:
        if client is not None:
            client.close()
    return AccountReport(
        name=account.name,
        kind=account.kind.kind,
        title=account.kind.title,
        auth_scheme=info.auth_scheme,
        region=info.region,
        source=source,
        has_credentials=account.has_credentials,
        token_expires_at=info.token_expires_at,
        status=status,
        detail=detail,
    )


def probe(call: Callable[[], object]) -> tuple[CheckStatus, str]:
    """One authenticated call, classified, with a short reason (never a header or a key)."""
    try:
        call()
    except ProviderError as exc:
        if is_refused_key(exc):
            return "refused", f"the provider refused the credential (HTTP {exc.status})"
        return "unavailable", _short(exc.message)
    except Exception as exc:  # a client bug or a socket error: not a verdict on the key
        return "unavailable", type(exc).__name__
    return "ok", "credential accepted"


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
