"""Run the Airship sandbox with uvicorn: blocking for the CLI, or in a background thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from worker.providers.airship.sandbox.app import create_sandbox_app
from worker.providers.airship.settings import AirshipSandboxSettings, AirshipSettings
from worker.providers.common import sandbox as common
from worker.providers.common.sandbox import ControlClient
from worker.providers.port import SandboxPass


@dataclass(frozen=True)
class SandboxHandle(ControlClient):
    """A running Airship sandbox: where it listens, its credentials, its /_sandbox endpoints."""

    base_url: str
    project_key: str
    project_secret: str
    client_id: str
    client_secret: str
    project_id: int

    def account(self, **overrides: Any) -> AirshipSettings:
        """Settings of an account pointed at this sandbox (Basic auth unless overridden)."""
        return AirshipSettings.model_validate({**self.account_overrides(), **overrides})

    def oauth_account(self, **overrides: Any) -> AirshipSettings:
        """Settings of an OAuth2 account pointed at this sandbox (its /token)."""
        values = {
            **self.account_overrides(),
            "auth": "oauth2",
            "api_key": self.client_id,
            "secret": self.client_secret,
            "token_url": f"{self.base_url}/token",
        }
        return AirshipSettings.model_validate({**values, **overrides})

    def account_overrides(self) -> dict[str, str]:
        return {
            "base_url": f"{self.base_url}/v1",
            "api_key": self.project_key,
            "secret": self.project_secret,
            "token_url": f"{self.base_url}/token",
            "project_id": str(self.project_id),
        }

    def passes(self) -> list[dict[str, Any]]:
        """Every pass as Airship shows it, deleted ones included (+ changeMessages shown)."""
        result: list[dict[str, Any]] = self._control("GET", "/passes")["passes"]
        return result

    def links(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "/links")["links"]
        return result

    def callbacks(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "/callbacks")
        return result

    def expire_tokens(self) -> int:
        """Every token issued so far expires now (the next request with one gets 401)."""
        return int(self._control("POST", "/tokens/expire")["expired"])

    def delete_externally(self, pass_id: str) -> None:
        self._control("POST", f"/passes/{pass_id}/delete-externally")

    def state(self) -> list[SandboxPass]:
        rows = self._control("GET", "/state")["passes"]
        return [
            SandboxPass(
                pass_id=row["pass_id"],
                external_id=row["external_id"],
                template=row["template"],
                fields=row["fields"],
                voided=row["voided"],
                deleted=row["deleted"],
            )
            for row in rows
        ]


def _handle(base_url: str, settings: AirshipSandboxSettings) -> SandboxHandle:
    return SandboxHandle(
        base_url.rstrip("/"),
        settings.project_key.get_secret_value(),
        settings.project_secret.get_secret_value(),
        settings.client_id.get_secret_value(),
        settings.client_secret.get_secret_value(),
        settings.project_id,
    )


def attach(base_url: str, settings: AirshipSandboxSettings) -> SandboxHandle:
    """The handle of an Airship sandbox running elsewhere (a `passsync sandbox` process)."""
    return _handle(base_url.removesuffix("/v1"), settings)


def make_server(settings: AirshipSandboxSettings, *, log_level: str = "info") -> uvicorn.Server:
    return common.make_server(
        create_sandbox_app(settings), settings.host, settings.port, log_level=log_level
    )


def serve(settings: AirshipSandboxSettings) -> None:
    """Serve on settings.host:settings.port until interrupted."""
    make_server(settings).run()


@contextmanager
def running_sandbox(settings: AirshipSandboxSettings) -> Iterator[SandboxHandle]:
    """Serve in a daemon thread and yield its handle; port 0 picks a free port."""
    app = create_sandbox_app(settings)
    with common.running_app(app, settings.host, settings.port, name="Airship sandbox") as url:
        yield _handle(url, settings)
