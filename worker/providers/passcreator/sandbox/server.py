"""Run the sandbox with uvicorn: blocking for the CLI, or in a background thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from worker.providers.common import sandbox as common
from worker.providers.common.sandbox import ControlClient
from worker.providers.passcreator.sandbox.app import create_sandbox_app
from worker.providers.passcreator.settings import SandboxSettings
from worker.providers.port import SandboxPass


@dataclass(frozen=True)
class SandboxHandle(ControlClient):
    """A running sandbox: where it listens, its key, and its /_sandbox control endpoints."""

    base_url: str
    api_key: str

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


def attach(base_url: str, settings: SandboxSettings) -> SandboxHandle:
    """The handle of a sandbox running elsewhere (a `passsync sandbox` process)."""
    return SandboxHandle(base_url, settings.api_key.get_secret_value())


def make_server(settings: SandboxSettings, *, log_level: str = "info") -> uvicorn.Server:
    return common.make_server(
        create_sandbox_app(settings), settings.host, settings.port, log_level=log_level
    )


def serve(settings: SandboxSettings) -> None:
    """Serve on settings.host:settings.port until interrupted."""
    make_server(settings).run()


@contextmanager
def running_sandbox(settings: SandboxSettings) -> Iterator[SandboxHandle]:
    """Serve in a daemon thread and yield its handle; port 0 picks a free port."""
    app = create_sandbox_app(settings)
    with common.running_app(app, settings.host, settings.port, name="sandbox server") as base_url:
        yield SandboxHandle(base_url, settings.api_key.get_secret_value())
