"""The run file the CLI attaches to: what it keeps, what it leaves out (issue 18, item 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from worker.commands.attach import attach, remove_run_file, running_stack, write_run_file


def test_the_run_file_keeps_what_the_stack_chose_and_no_exported_secret(tmp_path: Path) -> None:
    # Given the user exported a real API key and a Postgres URL with a password, and the stack
    # chose the broker, a sandbox endpoint and a generated secret
    exported = {
        "PASSSYNC_PROVIDERS__SHOP__API_KEY": "real-key",
        "PASSSYNC_DATABASE_URL": "postgresql+psycopg://u:hunter2@db/p",
        "PASSSYNC_API__PORT": "8080",
    }
    env = exported | {
        "PASSSYNC_BROKER_URL": "redis+socket:///tmp/x/redis.socket",
        "PASSSYNC_PROVIDERS__LOCAL__BASE_URL": "http://127.0.0.1:8090",
        "PASSSYNC_ADMIN_TOKENS__OPS__SECRET": "generated",
        "HOME": "/root",
    }
    # When the run file is written
    path = write_run_file(tmp_path, env, exported)
    # Then it is private and holds only the stack's own choices (and the port)
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["env"] == {
        "PASSSYNC_API__PORT": "8080",
        "PASSSYNC_BROKER_URL": "redis+socket:///tmp/x/redis.socket",
        "PASSSYNC_PROVIDERS__LOCAL__BASE_URL": "http://127.0.0.1:8090",
        "PASSSYNC_ADMIN_TOKENS__OPS__SECRET": "generated",
    }
    # And a command attaches beneath its own environment, with the generated token
    mine = {"PASSSYNC_BROKER_URL": "redis://mine"}
    assert attach(tmp_path, mine) is True
    assert mine["PASSSYNC_BROKER_URL"] == "redis://mine"  # what you export wins
    assert mine["PASSSYNC_TOKEN"] == "generated"
    # And without the file (stopped), or with a dead pid, nothing is attached
    remove_run_file(tmp_path)
    assert running_stack(tmp_path) is None
    path.write_text(json.dumps({"pid": _dead_pid(), "env": {"PASSSYNC_X": "1"}}))
    assert attach(tmp_path, {}) is False


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
