"""The PassKit sandbox's runtime knobs: behaviour config, seeded faults (with 503 bursts), stats."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar, Literal

from pydantic import ConfigDict

from worker.providers.common.sandbox import FaultControl, TokenBucket
from worker.providers.passkit.settings import PassKitSandboxBehaviour, PassKitSandboxSettings

FaultKind = Literal["500", "503", "commit_then_fail", "slow", "stream_error"]
FAULT_KINDS: tuple[FaultKind, ...] = ("500", "503", "commit_then_fail", "slow", "stream_error")
__all__ = ["FAULT_KINDS", "SandboxConfig", "SandboxControl", "TokenBucket"]


class SandboxConfig(PassKitSandboxBehaviour):
    """Everything POST /_sandbox/config may change; starts from the sandbox settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_settings(cls, settings: PassKitSandboxSettings) -> SandboxConfig:
        return cls.model_validate(settings.model_dump(include=set(cls.model_fields)))


class SandboxControl(FaultControl[SandboxConfig]):
    """Shared mutable state of one sandbox app; every method is thread-safe."""

    fault_kinds: ClassVar[tuple[str, ...]] = FAULT_KINDS
    counts_refusals: ClassVar[bool] = True

    def __init__(
        self, settings: PassKitSandboxSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(SandboxConfig.from_settings(settings), clock=clock)
