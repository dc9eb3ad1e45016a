"""The CLI finds the running stack: `passsync run` leaves a run file in its data directory,
and other commands started with the same data directory take its environment.

The run file (`<data_dir>/run.json`, mode 0600, removed on stop) holds the stack's pid and
the PASSSYNC_ variables it chose for its processes (the embedded broker, a SQLite database,
provider endpoints of local sandboxes, the generated secrets); what the user exported is not
copied (see `write_run_file`). A command adds them beneath its own environment:
what you export yourself always wins. Without a live stack nothing changes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from worker.commands.admin_token import TOKEN_ENV

RUN_FILE = "run.json"
# The token `passsync run` generates for the command line (see worker.stack).
GENERATED_TOKEN = "PASSSYNC_ADMIN_TOKENS__OPS__SECRET"  # noqa: S105 - a variable's name
# Commands that are (or start) processes of a stack: they never attach to another one.
STACK_COMMANDS = frozenset({"run", "api", "worker", "beat", "sandbox", "demo"})


def write_run_file(
    data_dir: Path, env: Mapping[str, str], exported: Mapping[str, str] | None = None
) -> Path:
    """Record the stack's pid and the PASSSYNC_ variables it chose for its processes.

    What the user `exported` is left out (a real API key or a database password must not be
    copied to disk; export it in the other shell too), except the data directory, the port
    and a SQLite database URL, which carry no secret and which the CLI needs.
    """
    exported = os.environ if exported is None else exported
    added = {
        k: v
        for k, v in env.items()
        if k.startswith("PASSSYNC_") and (exported.get(k) != v or _harmless(k, v))
    }
    path = data_dir / RUN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pid": os.getpid(), "env": added}, handle)
    return path


def _harmless(key: str, value: str) -> bool:
    if key in ("PASSSYNC_DATA_DIR", "PASSSYNC_API__PORT"):
        return True
    return key == "PASSSYNC_DATABASE_URL" and value.startswith("sqlite")


def remove_run_file(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / RUN_FILE).unlink()


def running_stack(data_dir: Path) -> dict[str, str] | None:
    """The live stack's environment for `data_dir`, or None (no file, or its process is gone)."""
    try:
        found = json.loads((data_dir / RUN_FILE).read_text())
        pid = int(found["pid"])
        env = {str(k): str(v) for k, v in dict(found["env"]).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    return env


def attach(data_dir: Path, environ: MutableMapping[str, str]) -> bool:
    """Add a live stack's variables beneath `environ`; whether there was one."""
    env = running_stack(data_dir)
    if env is None:
        return False
    for key, value in env.items():
        environ.setdefault(key, value)
    if GENERATED_TOKEN in environ:
        environ.setdefault(TOKEN_ENV, environ[GENERATED_TOKEN])
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
