"""The Airship sandbox's runtime knobs: behaviour config, seeded faults, stats."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from pydantic import ConfigDict

from worker.providers.airship.settings import AirshipSandboxBehaviour, AirshipSandboxSettings
from worker.providers.common.sandbox import FaultControl

FAULT_KINDS = ("500", "503", "commit_then_fail", "slow")


class SandboxConfig(AirshipSandboxBehaviour):
    """Everything POST /_sandbox/config may change; starts from the sandbox settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_settings(cls, settings: AirshipSandboxSettings) -> SandboxConfig:
        return cls.model_validate(settings.model_dump(include=set(cls.model_fields)))


class SandboxControl(FaultControl[SandboxConfig]):
    fault_kinds: ClassVar[tuple[str, ...]] = FAULT_KINDS
    counts_refusals: ClassVar[bool] = True

    def __init__(
        self, settings: AirshipSandboxSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(SandboxConfig.from_settings(settings), clock=clock)
