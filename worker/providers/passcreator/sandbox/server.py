"""Run the sandbox with uvicorn: blocking for the CLI, or in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from worker.providers.passcreator.sandbox.app import create_sandbox_app
from worker.providers.passcreator.settings import SandboxSettings
from worker.providers.port import SandboxPass

STARTUP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SandboxHandle:
    """A running sandbox: where it listens, its key, and its /_sandbox control endpoints."""

    base_url: str
    api_key: str

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/_sandbox{path}"
        response = httpx.request(method, url, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change behaviour at runtime (see SandboxConfig); returns the full config."""
        result: dict[str, Any] = self._control("POST", "/config", changes)
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "/stats")
        return result

    def passes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "/passes")["passes"]
        return result

    def templates(self) -> list[dict[str, Any]]:
        """Every template, deleted ones included, with its data and publish state."""
        result: list[dict[str, Any]] = self._control("GET", "/templates")["templates"]
        return result

    def hooks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "/hooks")["hooks"]
        return result

    def scans(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "/scans")["scans"]
        return result

    def pushes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "/pushes")["pushes"]
        return result

    def delete_externally(self, identifier: str) -> None:
        self._control("POST", f"/passes/{identifier}/delete-externally")

    def reset(self) -> None:
        """Empty the store, zero the stats, restore the start-up config."""
        self._control("POST", "/reset")

    # -- the neutral RunningSandbox view (worker.providers.port) ----------------------------

    def account_overrides(self) -> dict[str, str]:
        """The account settings that point a Passcreator account at this sandbox."""
        return {"base_url": self.base_url, "api_key": self.api_key}

    def state(self) -> list[SandboxPass]:
        """Every pass, deleted ones included, with its template's name."""
        names = {t["identifier"]: t["name"] for t in self.templates()}
        return [
            SandboxPass(
                pass_id=p["identifier"],
                external_id=p["userProvidedId"],
                template=names.get(p["templateId"]),
                fields=dict(p["fields"]),
                voided=bool(p["voided"]),
                deleted=bool(p["deleted"]),
            )
            for p in self.passes()
        ]


def make_server(settings: SandboxSettings, *, log_level: str = "info") -> uvicorn.Server:
    config = uvicorn.Config(
        create_sandbox_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=log_level == "debug",
    )
    return uvicorn.Server(config)


def serve(settings: SandboxSettings) -> None:
    """Serve on settings.host:settings.port until interrupted."""
    make_server(settings).run()


@contextmanager
def running_sandbox(settings: SandboxSettings) -> Iterator[SandboxHandle]:
    """Serve in a daemon thread and yield its handle; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    server = make_server(settings, log_level="warning")
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sandbox", daemon=True
    )
    thread.start()
    try:
        _wait_started(server, thread)
        host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
        yield SandboxHandle(f"http://{host}:{port}", settings.api_key.get_secret_value())
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_SECONDS)
        sock.close()


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the sandbox server stopped during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("the sandbox server did not start in time")
        time.sleep(0.01)
