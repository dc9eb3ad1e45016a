"""The canonical event refuses times that would freeze a pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from worker.inbound.schema import CanonicalEvent


def event(at: datetime) -> dict[str, object]:
    return {
        "id": "e1",
        "type": "customer.updated",
        "occurred_at": at.isoformat(),
        "customer": {"id": "c1"},
    }


def test_event_from_the_far_future_is_refused() -> None:
    with pytest.raises(ValidationError, match="in the future"):
        CanonicalEvent.model_validate(event(datetime(2126, 1, 1, tzinfo=UTC)))


def test_small_clock_skew_is_accepted() -> None:
    at = datetime.now(UTC) + timedelta(minutes=5)
    assert CanonicalEvent.model_validate(event(at)).occurred_at == at


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError):
        CanonicalEvent.model_validate(event(datetime(2026, 1, 1)))
