"""A point-of-sale scan as a scanner posts it, and the batch envelope.

As strict as the canonical event: a number is a JSON number (never `"12"` or `true`), finite,
and the scan time is plausible (not before 2000, not more than an hour ahead).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    field_validator,
    model_validator,
)

from worker.bounds import JsonObject, Text, check_moment

MAX_BATCH = 10_000


class ScanIn(BaseModel):
    """One scan: the pass by barcode value, provider pass id, or customer id + pass key."""

    model_config = ConfigDict(extra="forbid")

    id: Text = Field(min_length=1, max_length=255)
    scanned_at: AwareDatetime
    barcode: Text | None = Field(default=None, min_length=1, max_length=255)
    pass_id: Text | None = Field(default=None, min_length=1, max_length=255)
    customer_id: Text | None = Field(default=None, min_length=1, max_length=255)
    pass_key: Text | None = Field(default=None, min_length=1, max_length=64)
    location: Text | None = Field(default=None, max_length=255)
    # StrictFloat takes JSON numbers only; finite and within what a ledger column keeps.
    amount: StrictFloat | None = Field(default=None, allow_inf_nan=False, ge=-1e12, le=1e12)
    attributes: JsonObject = {}

    @field_validator("scanned_at")
    @classmethod
    def _plausible(cls, value: datetime) -> datetime:
        return check_moment(value)

    @model_validator(mode="after")
    def _identified(self) -> ScanIn:
        if not (self.barcode or self.pass_id or (self.customer_id and self.pass_key)):
            raise ValueError("a scan names barcode, pass_id, or customer_id and pass_key")
        return self


class ScanBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scans: list[ScanIn] = Field(min_length=1, max_length=MAX_BATCH)
