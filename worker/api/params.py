"""Bounded path and query parameters: an out-of-range number is a 422, never a database error."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from worker.bounds import INT64_MAX

# Row ids: positive and within a signed 64-bit column.
RowId = Annotated[int, Path(ge=1, le=INT64_MAX)]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX)]
Limit = Annotated[int, Query(ge=1, le=500)]
# A free-text filter (customer id, destination name, ...), as long as the longest column.
Name = Annotated[str | None, Query(min_length=1, max_length=255)]
