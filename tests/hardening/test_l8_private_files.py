"""L8: the data directory is 0700 and the files in it 0600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from worker.config import Settings
from worker.db import Database
from worker.stack import load_or_create_secrets


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _usual_umask() -> object:
    """The common default umask (022): what made the directory 0755 and the files 0644."""
    previous = os.umask(0o022)
    yield None
    os.umask(previous)


def test_the_sqlite_database_and_its_directory_are_private(tmp_path: Path) -> None:
    data = tmp_path / ".passsync"
    db = Database(f"sqlite:///{data / 'passsync.db'}")
    try:
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x TEXT)"))
            conn.execute(text("INSERT INTO t VALUES ('customer data')"))
        assert mode(data) == 0o700
        files = sorted(p.name for p in data.iterdir())
        assert "passsync.db" in files
        for name in files:  # the database and its -wal / -shm files
            assert mode(data / name) == 0o600, name
    finally:
        db.dispose()


def test_an_existing_database_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    Database(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o600


def test_the_embedded_secrets_directory_is_private(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    data = tmp_path / "data"
    load_or_create_secrets(data, make_settings(sources={"crm": {}}))
    assert mode(data) == 0o700
    assert mode(data / "secrets.env") == 0o600


def test_the_command_creates_only_private_files(tmp_path: Path) -> None:
    # Given the default data directory under the working directory
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSSYNC_")}
    env["PASSSYNC_CONFIG"] = str(tmp_path / "absent.yaml")
    (tmp_path / "absent.yaml").write_text("{}\n")
    # When the database is created by the command
    subprocess.run(
        [sys.executable, "-c", "from worker.cli import main; main()", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Then nothing under the data directory is readable by others
    data = tmp_path / ".passsync"
    assert mode(data) == 0o700
    for path in data.rglob("*"):
        assert mode(path) & 0o077 == 0, path
