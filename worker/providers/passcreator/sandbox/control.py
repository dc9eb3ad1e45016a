"""The sandbox's runtime knobs: behaviour config, token bucket, seeded faults and stats."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar, Literal

from pydantic import ConfigDict

from worker.providers.common.sandbox import FaultControl, TokenBucket
from worker.providers.passcreator.settings import SandboxBehaviour, SandboxSettings

FaultKind = Literal["500", "503", "commit_then_fail", "non_json", "slow"]
FAULT_KINDS: tuple[FaultKind, ...] = ("500", "503", "commit_then_fail", "non_json", "slow")
__all__ = ["FAULT_KINDS", "SandboxConfig", "SandboxControl", "TokenBucket"]


class SandboxConfig(SandboxBehaviour):
    """Everything POST /_sandbox/config may change; starts from SandboxSettings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_settings(cls, settings: SandboxSettings) -> SandboxConfig:
        return cls.model_validate(settings.model_dump(include=set(cls.model_fields)))


class SandboxControl(FaultControl[SandboxConfig]):
    """Shared mutable state of one sandbox app; every method is thread-safe."""

    fault_kinds: ClassVar[tuple[str, ...]] = FAULT_KINDS

    def __init__(self, settings: SandboxSettings, *, clock: Callable[[], float] = time.monotonic):
        super().__init__(SandboxConfig.from_settings(settings), clock=clock)
