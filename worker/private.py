"""Files only the user running passsync may read: data directories 0700, files 0600.

The data directory holds the SQLite database (customer data), the generated secrets, the
embedded Redis and the logs; nobody else on the machine needs to read any of it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) and make it 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # a directory someone else owns: leave it
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty if it is missing, and make it 0600 (before anything is written).

    An existing file is never opened: closing any descriptor of a SQLite database drops
    every POSIX lock this process holds on it (other connections' locks included), which
    lets another process's commit be lost.
    """
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        os.close(fd)
    with contextlib.suppress(PermissionError):
        os.chmod(path, FILE_MODE)
    return path
