"""The canonical customer event, version 1, and the batch envelope that carries several."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from worker.bounds import JsonObject, Text, check_moment

MAX_BATCH = 10_000
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Text = Field(min_length=1, max_length=255)
    email: Text | None = Field(default=None, max_length=320)
    first_name: Text | None = Field(default=None, max_length=255)
    last_name: Text | None = Field(default=None, max_length=255)
    attributes: JsonObject = {}


class CanonicalEvent(BaseModel):
    """One customer event: customer.created|updated, order.completed, membership.expired, ..."""

    model_config = ConfigDict(extra="forbid")

    id: Text = Field(min_length=1, max_length=255)
    type: str = Field(max_length=128, pattern=EVENT_TYPE_PATTERN)
    occurred_at: AwareDatetime
    customer: Customer
    data: JsonObject = {}

    @field_validator("occurred_at")
    @classmethod
    def _not_absurd(cls, value: datetime) -> datetime:
        # A future time would make every later real event look older and be skipped.
        try:
            return check_moment(value)
        except ValueError:
            raise ValueError(
                "occurred_at is before 2000 or more than an hour in the future"
            ) from None


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The receiver's own limit (api.max_batch_events, at most this) is checked first.
    events: list[CanonicalEvent] = Field(min_length=1, max_length=MAX_BATCH)
