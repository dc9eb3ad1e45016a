"""What every platform's action inputs and outputs share: strict models (a bad argument is
named, never guessed), a non-blank text type, field values, and the list limits."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(not_blank)]
Scalar = str | int | float | bool
FieldValue = Scalar | None


class ActionInput(BaseModel):
    """Base of every input: strict types, unknown arguments refused, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ActionOutput(BaseModel):
    """Base of every output: immutable."""

    model_config = ConfigDict(frozen=True)
