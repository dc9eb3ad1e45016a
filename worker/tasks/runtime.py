"""Per-process resources for tasks (settings, database, provider), built lazily after fork."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from worker.config import Settings, load_settings
from worker.db import Database
from worker.providers.registry import build_provider
from worker.sync.engine import SyncContext
from worker.sync.templates import TemplateResolver


@dataclass
class Runtime:
    settings: Settings
    db: Database
    sync: SyncContext


_lock = threading.Lock()
_state: dict[int, Runtime] = {}


def get_runtime() -> Runtime:
    """The current process's runtime; a forked child builds its own (no shared sockets)."""
    pid = os.getpid()
    with _lock:
        runtime = _state.get(pid)
        if runtime is None:
            settings = load_settings()
            provider = build_provider(settings)
            runtime = Runtime(
                settings=settings,
                db=Database(settings.database_url, pool_size=2),
                sync=SyncContext(settings, provider, TemplateResolver(provider)),
            )
            _state.clear()
            _state[pid] = runtime
        return runtime


def set_runtime(runtime: Runtime) -> None:
    """Install a runtime (tests and in-process runs)."""
    with _lock:
        _state.clear()
        _state[os.getpid()] = runtime


def reset_runtime() -> None:
    """Forget this process's runtime; the next task builds it from the settings again."""
    with _lock:
        _state.clear()
