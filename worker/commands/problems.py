"""Setup problems: what the operator must fix, said in one line (exit 2), never a traceback.

`explain` turns the exceptions that mean "passsync is not set up yet" (an unreachable or
unmigrated database, an unsupported database URL, a taken port, a question with no terminal
to answer it) into that line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

from sqlalchemy import exc as sa_exc

from worker.db import DATABASE_UNAVAILABLE, UnsupportedDatabaseError

NOT_MIGRATED = "database not migrated: run `passsync db upgrade`"


class SetupError(Exception):
    """A setup problem; the message says what to do."""


def explain(exc: BaseException) -> str | None:
    """The one line for a setup problem, or None when `exc` is not one."""
    if isinstance(exc, SetupError | UnsupportedDatabaseError):
        return str(exc)
    if isinstance(exc, sa_exc.NoSuchModuleError | sa_exc.ArgumentError):
        return f"unsupported database URL ({_first_line(exc)})"
    if isinstance(exc, ModuleNotFoundError) and exc.name in DRIVER_MODULES:
        return f"unsupported database URL: its driver ({exc.name}) is not installed"
    if is_not_migrated(exc):
        return NOT_MIGRATED
    if isinstance(exc, DATABASE_UNAVAILABLE):
        reason = _first_line(getattr(exc, "orig", None) or exc)
        return f"database unreachable ({reason}): check PASSSYNC_DATABASE_URL"
    return None


# Drivers SQLAlchemy imports for URLs passsync does not support.
DRIVER_MODULES = frozenset({"MySQLdb", "pymysql", "cx_Oracle", "oracledb", "pyodbc", "pymssql"})


def is_not_migrated(exc: BaseException) -> bool:
    """A query met a missing table: the schema was never created (or is behind)."""
    if not isinstance(exc, sa_exc.OperationalError | sa_exc.ProgrammingError):
        return False
    text = str(getattr(exc, "orig", exc))
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def require_terminal(what: str) -> None:
    """A question needs someone to answer it: without a terminal, say which flag skips it."""
    if not sys.stdin.isatty():
        raise SetupError(f"{what} asks for confirmation and there is no terminal: add --yes")


def _first_line(exc: object) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return " ".join(line.split())[:200]
