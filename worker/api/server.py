"""How uvicorn serves the API: connection limits and timeouts from settings (see README,
"Running behind a reverse proxy").

uvicorn closes a kept-alive connection after `timeout_keep_alive`, but a connection that
sends nothing, or half a request's headers, it keeps forever: a few thousand such
connections hold every file descriptor and the next signed webhook cannot connect. The
protocol below closes a connection whose request headers are not complete within
`api.header_timeout_seconds`; past `api.limit_concurrency` connections or requests in
flight, uvicorn answers 503 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from worker.config import ApiSettings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency; h11 is uvicorn's fallback
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


class _HeaderTimeout:
    """Closes the connection when a request's headers take longer than `header_timeout`.

    The clock starts when the connection opens and when the first bytes of a next request
    arrive; it stops once uvicorn has parsed the headers (it then starts a new cycle).
    """

    header_timeout: float = 10.0
    cycle: Any
    transport: asyncio.Transport
    _header_timer: asyncio.TimerHandle | None = None
    _timed_cycle: Any = None

    def _arm(self) -> None:
        if self._header_timer is None:
            self._timed_cycle = self.cycle
            loop = asyncio.get_running_loop()
            self._header_timer = loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is self._timed_cycle and not self.transport.is_closing():
            self.transport.close()

    def _after_data(self) -> None:
        if self.cycle is not self._timed_cycle:
            self._disarm()  # headers complete: a new request cycle began

    def _before_data(self) -> None:
        if self._header_timer is None and (
            self.cycle is None or getattr(self.cycle, "response_complete", True)
        ):
            self._arm()


class _Hooks(_HeaderTimeout):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._before_data()
        super().data_received(data)  # type: ignore[misc]
        self._after_data()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]


class HeaderTimeoutH11(_Hooks, H11Protocol):
    """uvicorn's h11 protocol with the header timeout."""


if HttpToolsProtocol is not None:

    class HeaderTimeoutHttpTools(_Hooks, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header timeout."""


def configure(settings: ApiSettings) -> str:
    """Set the header timeout (in this process) and name the protocol class for uvicorn.

    A name, not the class: with several workers uvicorn hands its config to new processes,
    and each worker process calls this again when it builds its app.
    """
    _HeaderTimeout.header_timeout = settings.header_timeout_seconds
    name = "HeaderTimeoutHttpTools" if HttpToolsProtocol is not None else "HeaderTimeoutH11"
    return f"{__name__}:{name}"


def uvicorn_options(settings: ApiSettings) -> dict[str, Any]:
    """The keyword arguments for `uvicorn.run` / `uvicorn.Config` besides the app."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": configure(settings),
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "backlog": settings.backlog,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "server_header": False,
        "access_log": False,
        # Our logging (root handler, redaction, levels) instead of uvicorn's own handlers.
        "log_config": None,
    }


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard limit; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
