"""The output of each action: always a JSON object (MCP requires one for structured results)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from worker.providers.passcreator.models import PassRow
from worker.providers.port import ProviderTemplate


class _Output(BaseModel):
    model_config = ConfigDict(frozen=True)


class PassList(_Output):
    """Passes, newest first; `limit_reached` means more may exist (raise `limit`)."""

    passes: list[PassRow]
    count: int
    limit_reached: bool


class TemplateList(_Output):
    templates: list[ProviderTemplate]
    count: int


class PassDeleted(_Output):
    pass_id: str
    deleted: Literal[True] = True


class TemplateDeleted(_Output):
    template_id: str
    deleted: Literal[True] = True
