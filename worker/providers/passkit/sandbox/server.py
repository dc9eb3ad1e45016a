"""Run the PassKit sandbox with uvicorn: blocking for the CLI, or in a background thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from worker.providers.common import sandbox as common
from worker.providers.common.sandbox import ControlClient
from worker.providers.passkit.sandbox.app import create_sandbox_app
from worker.providers.passkit.settings import PassKitSandboxSettings, PassKitSettings
from worker.providers.port import SandboxPass


@dataclass(frozen=True)
class SandboxHandle(ControlClient):
    """A running PassKit sandbox: where it listens, its credentials, its /_sandbox endpoints."""

    base_url: str
    api_key: str
    api_secret: str

    def account(self, **overrides: Any) -> PassKitSettings:
        """Settings of an account pointed at this sandbox (JWT credentials)."""
        values: dict[str, Any] = {**self.account_overrides(), **overrides}
        return PassKitSettings.model_validate(values)

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


def attach(base_url: str, settings: PassKitSandboxSettings) -> SandboxHandle:
    """The handle of a PassKit sandbox running elsewhere (a `passsync sandbox` process)."""
    return SandboxHandle(
        base_url.rstrip("/"),
        settings.api_key.get_secret_value(),
        settings.api_secret.get_secret_value(),
    )


def make_server(settings: PassKitSandboxSettings, *, log_level: str = "info") -> uvicorn.Server:
    return common.make_server(
        create_sandbox_app(settings), settings.host, settings.port, log_level=log_level
    )


def serve(settings: PassKitSandboxSettings) -> None:
    """Serve on settings.host:settings.port until interrupted."""
    make_server(settings).run()


@contextmanager
def running_sandbox(settings: PassKitSandboxSettings) -> Iterator[SandboxHandle]:
    """Serve in a daemon thread and yield its handle; port 0 picks a free port."""
    app = create_sandbox_app(settings)
    with common.running_app(app, settings.host, settings.port, name="PassKit sandbox") as base_url:
        yield SandboxHandle(
            base_url,
            settings.api_key.get_secret_value(),
            settings.api_secret.get_secret_value(),
        )
