"""Run the PassKit sandbox with uvicorn: blocking for the CLI, or in a background thread."""

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

from worker.providers.passkit.sandbox.app import create_sandbox_app
from worker.providers.passkit.settings import PassKitSandboxSettings, PassKitSettings
from worker.providers.port import SandboxPass

STARTUP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SandboxHandle:
    """A running PassKit sandbox: where it listens, its credentials, its /_sandbox endpoints."""

    base_url: str
    api_key: str
    api_secret: str

    def account(self, **overrides: Any) -> PassKitSettings:
        """Settings of an account pointed at this sandbox (JWT credentials)."""
        values: dict[str, Any] = {**self.account_overrides(), **overrides}
        return PassKitSettings.model_validate(values)

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.base_url}/_sandbox{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change behaviour at runtime (see PassKitSandboxBehaviour); returns the full config."""
        result: dict[str, Any] = self._control("POST", "/config", changes)
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "/stats")
        return result

    def members(self) -> list[dict[str, Any]]:
        """Every member, deleted ones included (`deleted`, `voided`, `events`)."""
        result: list[dict[str, Any]] = self._control("GET", "/members")["members"]
        return result

    def state(self) -> list[SandboxPass]:
        """Every member as a neutral SandboxPass (deleted ones included)."""
        return [
            SandboxPass(
                pass_id=row["pass_id"],
                external_id=row["external_id"],
                template=row["template"],
                fields=row["fields"],
                voided=row["voided"],
                deleted=row["deleted"],
            )
            for row in self.state_rows()
        ]

    def state_rows(self) -> list[dict[str, Any]]:
        """Every member in neutral terms (pass_id, external_id, template, fields, voided...)."""
        result: list[dict[str, Any]] = self._control("GET", "/state")["passes"]
        return result

    def account_overrides(self) -> dict[str, str]:
        """Settings that point an account at this sandbox."""
        return {
            "base_url": self.base_url,
            "pass_link_base": f"{self.base_url}/_sandbox/pass",
            "api_key": self.api_key,
            "secret": self.api_secret,
        }

    def programs(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "/programs")["programs"]
        return result

    def messages(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "/messages")["messages"]
        return result

    def delete_externally(self, member_id: str) -> None:
        self._control("POST", f"/members/{member_id}/delete-externally")

    def reset(self) -> None:
        """Empty the store, zero the stats, restore the start-up config."""
        self._control("POST", "/reset")


def attach(base_url: str, settings: PassKitSandboxSettings) -> SandboxHandle:
    """The handle of a PassKit sandbox running elsewhere (a `passsync sandbox` process)."""
    return SandboxHandle(
        base_url.rstrip("/"),
        settings.api_key.get_secret_value(),
        settings.api_secret.get_secret_value(),
    )


def make_server(settings: PassKitSandboxSettings, *, log_level: str = "info") -> uvicorn.Server:
    config = uvicorn.Config(
        create_sandbox_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=log_level == "debug",
    )
    return uvicorn.Server(config)


def serve(settings: PassKitSandboxSettings) -> None:
    """Serve on settings.host:settings.port until interrupted."""
    make_server(settings).run()


@contextmanager
def running_sandbox(settings: PassKitSandboxSettings) -> Iterator[SandboxHandle]:
    """Serve in a daemon thread and yield its handle; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    server = make_server(settings, log_level="warning")
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="passkit-sandbox", daemon=True
    )
    thread.start()
    try:
        _wait_started(server, thread)
        host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
        yield SandboxHandle(
            f"http://{host}:{port}",
            settings.api_key.get_secret_value(),
            settings.api_secret.get_secret_value(),
        )
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_SECONDS)
        sock.close()


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the PassKit sandbox stopped during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("the PassKit sandbox did not start in time")
        time.sleep(0.01)
