"""A point-of-sale scan as a scanner posts it, and the batch envelope."""

from __future__ import annotations

import math
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator


class ScanIn(BaseModel):
    """One scan: the pass by barcode value, provider pass id, or customer id + pass key."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=255)
    scanned_at: AwareDatetime
    barcode: str | None = Field(default=None, min_length=1, max_length=255)
    pass_id: str | None = Field(default=None, min_length=1, max_length=255)
    customer_id: str | None = Field(default=None, min_length=1, max_length=255)
    pass_key: str | None = Field(default=None, min_length=1, max_length=64)
    location: str | None = Field(default=None, max_length=255)
    amount: float | None = None
    attributes: dict[str, Any] = {}

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("amount must be a finite number")
        return value

    @model_validator(mode="after")
    def _identified(self) -> ScanIn:
        if not (self.barcode or self.pass_id or (self.customer_id and self.pass_key)):
            raise ValueError("a scan names barcode, pass_id, or customer_id and pass_key")
        return self


class ScanBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scans: list[ScanIn] = Field(min_length=1)
