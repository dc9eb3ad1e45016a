"""Pieces of a kind's descriptor (`kind.py`) that every platform builds the same way.

A descriptor must not import its platform's HTTP client or sandbox (the registry imports
`kind.py` whenever the kind is named); these helpers import them on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from worker.providers.port import RunningSandbox, SandboxKit


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A callable that imports `module` on its first call and calls its `name`."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    call.__qualname__ = f"lazy:{module}.{name}"
    return call


def sandbox_kit(
    server_module: str,
    settings_model: type[BaseModel],
    account_overrides: Callable[[Any, str], dict[str, str]],
    *,
    simulate_device: Callable[[str, str, str, str], bool] | None = None,
) -> SandboxKit:
    """A SandboxKit whose server module (`running_sandbox(settings)`, `serve(settings)`,
    `attach(base_url, settings)`) is imported only when a sandbox is started or attached."""

    def checked(settings: Any) -> Any:
        if not isinstance(settings, settings_model):
            raise TypeError(f"expected {settings_model.__name__}, got {type(settings).__name__}")
        return settings

    @contextmanager
    def running(settings: Any) -> Iterator[RunningSandbox]:
        server = importlib.import_module(server_module)
        with server.running_sandbox(checked(settings)) as handle:
            yield handle

    def serve(settings: Any) -> None:
        importlib.import_module(server_module).serve(checked(settings))

    def attach(base_url: str, settings: Any) -> RunningSandbox:
        handle: RunningSandbox = importlib.import_module(server_module).attach(
            base_url, checked(settings)
        )
        return handle

    return SandboxKit(
        settings_model=settings_model,
        account_overrides=account_overrides,
        running=running,
        serve=serve,
        attach=attach,
        simulate_device=simulate_device,
    )
