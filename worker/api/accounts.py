"""GET /api/accounts (read scope): every provider account, its credential described and
checked (one cheap call, cached), never the secret. Also the API process's credential
reloader: a rotation (`passsync accounts rotate`, SIGHUP) reaches this process through it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from worker.api.auth import ReadAccess
from worker.api.context import ApiContext, Context
from worker.providers.credentials import AccountReport, describe_accounts
from worker.providers.port import AccountSettings
from worker.providers.rotation import CredentialReloader

router = APIRouter(prefix="/api", tags=["accounts"])

CHECK_TTL_SECONDS = 60.0
CHECK_TIMEOUT_SECONDS = 10.0


class AccountOut(BaseModel):
    name: str
    kind: str
    title: str
    auth_scheme: str
    region: str | None
    # Where the secret settings come from: the secrets file, the environment, or nowhere.
    source: str
    has_credentials: bool
    token_expires_at: datetime | None
    # ok, refused (the provider refused the credential), unavailable, or missing.
    status: str
    detail: str
    checked_at: datetime


class AccountsOut(BaseModel):
    accounts: list[AccountOut]
    # The fleet's credential generation this process has seen (null: no shared Redis).
    generation: int | None


_lock = threading.Lock()
_reloaders: dict[int, CredentialReloader] = {}
# Per app: account -> (its settings object when checked, monotonic time, report, wall time).
_checks: dict[int, dict[str, tuple[AccountSettings, float, AccountReport, datetime]]] = {}


def reloader_of(ctx: ApiContext) -> CredentialReloader:
    """This app's credential reloader (one per API context), refreshed (cheap between looks)."""
    with _lock:
        found = _reloaders.get(id(ctx))
        if found is None:
            found = _reloaders[id(ctx)] = CredentialReloader(ctx.settings)
    found.refresh()
    return found


@router.get("/accounts")
def list_accounts(
    principal: ReadAccess,
    ctx: Context,
    refresh: Annotated[
        bool, Query(description=f"Check now instead of using a check under {CHECK_TTL_SECONDS:g} s")
    ] = False,
) -> AccountsOut:
    """Every account: platform, region, auth scheme, credential source, token expiry and
    whether the provider accepts the credential (one cheap call per account, cached)."""
    reloader = reloader_of(ctx)
    settings = ctx.settings
    cache = _checks.setdefault(id(ctx), {})
    now = time.monotonic()
    due = [
        name
        for name, conf in settings.providers.items()
        if refresh
        or name not in cache
        or cache[name][0] is not conf
        or now - cache[name][1] >= CHECK_TTL_SECONDS
    ]
    if due:
        _check(ctx, due, cache)
    rows: list[AccountOut] = []
    for name in settings.providers:
        entry = cache.get(name)
        if entry is None:
            continue
        _conf, _at, report, wall = entry
        data: dict[str, Any] = {**report.as_json(), "checked_at": wall}
        data["token_expires_at"] = report.token_expires_at
        rows.append(AccountOut.model_validate(data))
    return AccountsOut(accounts=rows, generation=reloader.generation)


def _check(
    ctx: ApiContext,
    names: list[str],
    cache: dict[str, tuple[AccountSettings, float, AccountReport, datetime]],
) -> None:
    """Check the accounts side by side; one that does not answer in time is unavailable."""
    settings = ctx.settings
    confs = {name: settings.providers[name] for name in names}
    pool = ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="accounts")
    futures = {
        name: pool.submit(describe_accounts, settings, check=True, names=[name]) for name in names
    }
    wait(futures.values(), timeout=CHECK_TIMEOUT_SECONDS)
    pool.shutdown(wait=False, cancel_futures=True)
    for name, future in futures.items():
        if future.done() and future.exception() is None:
            report = future.result()[0]
        else:
            report = replace(
                describe_accounts(settings, names=[name])[0],
                status="unavailable",
                detail=f"no answer within {CHECK_TIMEOUT_SECONDS:g} s",
            )
        cache[name] = (confs[name], time.monotonic(), report, datetime.now(UTC))
