"""Every setup problem is one line on stderr and exit 2, never a traceback (issue 18, item 3).

Each case runs the real console entry point in its own process, as a user would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.stack import free_port


def passsync(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PASSSYNC_")}
    clean["PASSSYNC_DATA_DIR"] = str(cwd / "data")
    clean["PASSSYNC_DATABASE_URL"] = f"sqlite:///{cwd / 'passsync.db'}"
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=cwd,
        env=clean | (env or {}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [expected]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_database_unreachable(tmp_path: Path) -> None:
    # given: nothing listens where the database should be
    url = f"postgresql+psycopg://passsync@127.0.0.1:{free_port()}/passsync"
    # when
    result = passsync(tmp_path, "events", "list", env={"PASSSYNC_DATABASE_URL": url})
    # then
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("passsync: database unreachable (")
    assert result.stderr.endswith("): check PASSSYNC_DATABASE_URL\n")
    assert "Connection refused" in result.stderr


def test_database_not_migrated(tmp_path: Path) -> None:
    result = passsync(tmp_path, "events", "list")
    assert_one_line(result, "passsync: database not migrated: run `passsync db upgrade`")


def test_unsupported_database_url(tmp_path: Path) -> None:
    result = passsync(
        tmp_path, "db", "upgrade", env={"PASSSYNC_DATABASE_URL": "mysql://u:pw@db/passsync"}
    )
    assert_one_line(
        result,
        "passsync: unsupported database URL scheme 'mysql': passsync runs on sqlite:///PATH "
        "or postgresql+psycopg://...",
    )
    assert "pw" not in result.stderr


def test_api_port_in_use(tmp_path: Path, taken_port: int) -> None:
    result = passsync(tmp_path, "api", env={"PASSSYNC_API__PORT": str(taken_port)})
    assert_one_line(
        result,
        f"passsync: port {taken_port} is already in use: stop what holds it or set "
        "PASSSYNC_API__PORT to another",
    )


def test_run_port_in_use(tmp_path: Path, taken_port: int) -> None:
    result = passsync(tmp_path, "run", env={"PASSSYNC_API__PORT": str(taken_port)})
    assert_one_line(
        result,
        f"passsync: port {taken_port} is already in use (another passsync?): stop it or set "
        "PASSSYNC_API__PORT to another",
    )


def test_confirmation_without_a_terminal(tmp_path: Path) -> None:
    token = {
        "PASSSYNC_ADMIN_TOKENS__OPS__SECRET": "t0ken-t0ken-t0ken",
        "PASSSYNC_ADMIN_TOKENS__OPS__SCOPES": '["read", "write"]',
        "PASSSYNC_TOKEN": "t0ken-t0ken-t0ken",
    }
    result = passsync(tmp_path, "passes", "delete", "p-1", env=token)
    assert_one_line(
        result,
        "passsync: Delete pass p-1: asks for confirmation and there is no terminal: add --yes",
    )


def test_db_upgrade_says_what_it_did(tmp_path: Path) -> None:
    first = passsync(tmp_path, "db", "upgrade")
    again = passsync(tmp_path, "db", "upgrade")
    assert first.returncode == 0 and again.returncode == 0
    assert first.stdout.startswith("database migrated from an empty schema to 00")
    assert first.stdout.rstrip().endswith("migrations applied)")
    assert again.stdout.startswith("database already at the latest revision (00")


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = passsync(tmp_path, "--version")
    assert (result.returncode, result.stdout) == (0, f"passsync {version('passsync')}\n")
