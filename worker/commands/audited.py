"""The Passcreator client used by `passsync passes|templates|mcp`: every attempt is audited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from worker.audit import AuditEntry, AuditRecorder
from worker.config import Settings
from worker.db import Database
from worker.providers.passcreator.client import PasscreatorClient

NO_KEY = (
    "no Passcreator API key: set PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY, or try the local "
    "sandbox: run `passsync sandbox`, then set PASSSYNC_PROVIDERS__PASSCREATOR__BASE_URL="
    "http://127.0.0.1:8090 and PASSSYNC_PROVIDERS__PASSCREATOR__API_KEY=sandbox-key"
)


class SetupError(Exception):
    """passsync cannot make audited provider calls yet; the message says what to do."""


@contextmanager
def audited_client(settings: Settings) -> Iterator[PasscreatorClient]:
    """A client whose every HTTP attempt becomes an audit row (actor: the caller's context).

    Refuses (SetupError) before any call when there is no API key or no audit table, so
    nothing is ever sent unrecorded.
    """
    if settings.providers.passcreator.api_key is None:
        raise SetupError(NO_KEY)
    database = Database(settings.database_url, pool_size=1)
    try:
        _require_audit_table(database)
        recorder = AuditRecorder(database, provider="passcreator")
        with PasscreatorClient(
            settings.providers.passcreator, on_attempt=recorder.on_attempt
        ) as client:
            yield client
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
