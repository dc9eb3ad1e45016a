"""The account's client used by `passsync passes|templates|mcp`: every attempt is audited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from worker.actions import Catalogue
from worker.audit import AuditEntry, AuditRecorder
from worker.config import Settings
from worker.db import Database
from worker.providers import registry
from worker.providers.port import AccountSettings, ClosableProvider
from worker.providers.rotation import CredentialReloader, RotatingProvider


def catalogue_of(settings: Settings, account: str | None = None) -> Catalogue:
    """The action catalogue of the account's platform (empty when it defines none)."""
    try:
        kind = registry.account(settings, account).kind
    except LookupError as exc:
        raise SetupError(str(exc.args[0])) from None
    return kind.actions() if kind.actions is not None else {}


def no_credentials(account: registry.Account) -> str:
    """What to do when the account has no credentials (names its variables, not values)."""
    hint = account.kind.credential_hint.replace("{ACCOUNT}", account.name.upper())
    sandbox = (
        f"; or try the local sandbox: `passsync sandbox --account {account.name}`, then point "
        "the account at it"
        if account.kind.sandbox is not None
        else ""
    )
    return f"no credentials for account {account.name!r} ({account.kind.title}): {hint}{sandbox}"


class SetupError(Exception):
    """passsync cannot make audited provider calls yet; the message says what to do."""


@contextmanager
def audited_client(
    settings: Settings,
    account: str | None = None,
    *,
    reloader: CredentialReloader | None = None,
) -> Iterator[ClosableProvider]:
    """The account's client (default: sync.default_account) whose every HTTP attempt becomes
    an audit row carrying the account (actor: the caller's context). With a `reloader`
    (long-lived processes: `passsync mcp`), the client follows credential rotations.

    Refuses (SetupError) before any call when the account is unknown, has no credentials, or
    there is no audit table, so nothing is ever sent unrecorded.
    """
    try:
        chosen = registry.account(settings, account)
    except LookupError as exc:
        raise SetupError(str(exc.args[0])) from None
    if not chosen.has_credentials:
        raise SetupError(no_credentials(chosen))
    database = Database(settings.database_url, pool_size=1)
    try:
        _require_audit_table(database)
        recorder = AuditRecorder(database, provider=chosen.name)
        client: ClosableProvider
        if reloader is None:
            client = chosen.build_client(recorder.on_attempt)
        else:
            kind = chosen.kind

            def build(conf: AccountSettings) -> ClosableProvider:
                return registry.Account(chosen.name, kind, conf).build_client(recorder.on_attempt)

            client = RotatingProvider(reloader, chosen.name, build)
        try:
            yield client
        finally:
            client.close()
    finally:
        database.dispose()


def _require_audit_table(database: Database) -> None:
    table = str(AuditEntry.__tablename__)
    try:
        present = inspect(database.engine).has_table(table)
    except SQLAlchemyError as exc:
        raise SetupError(
            f"cannot open the database for the audit trail ({type(exc).__name__}); "
            "check PASSSYNC_DATABASE_URL"
        ) from None
    if not present:
        raise SetupError(
            f"the audit table {table} is missing (every call is audited): "
            "run `passsync db upgrade` first"
        )
