"""The canonical customer event, version 1, and the batch envelope that carries several."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

MAX_FUTURE_SKEW = timedelta(hours=1)
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    attributes: dict[str, Any] = {}


class CanonicalEvent(BaseModel):
    """One customer event: customer.created|updated, order.completed, membership.expired, ..."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=255)
    type: str = Field(max_length=128, pattern=EVENT_TYPE_PATTERN)
    occurred_at: AwareDatetime
    customer: Customer
    data: dict[str, Any] = {}

    @field_validator("occurred_at")
    @classmethod
    def _not_absurd(cls, value: datetime) -> datetime:
        # A future time would make every later real event look older and be skipped.
        if value.year < 2000 or value > datetime.now(UTC) + MAX_FUTURE_SKEW:
            raise ValueError("occurred_at is before 2000 or more than an hour in the future")
        return value


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[CanonicalEvent] = Field(min_length=1)
