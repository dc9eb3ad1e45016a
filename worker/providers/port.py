"""The Protocol the domain sees; concrete clients live in providers/<name>/."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict


class ProviderPass(BaseModel):
    """What the domain needs to know of a pass at the provider."""

    model_config = ConfigDict(frozen=True)

    pass_id: str
    user_provided_id: str | None = None
    template_id: str | None = None
    voided: bool = False
    fields: dict[str, Any] = {}
    download_page: str | None = None
    iphone_uri: str | None = None
    android_uri: str | None = None


class ProviderTemplate(BaseModel):
    model_config = ConfigDict(frozen=True)

    template_id: str
    name: str


class PassProvider(Protocol):
    """The calls the sync engine makes; every method raises only providers.errors types."""

    name: str

    def create_pass(
        self, *, template_id: str, user_provided_id: str, fields: dict[str, Any]
    ) -> ProviderPass:
        """Create with the provider's uniqueness guard; AlreadyExistsError if the id is used."""
        ...

    def update_pass(self, pass_id: str, fields: dict[str, Any]) -> ProviderPass:
        """Merge `fields` into the pass; NotFoundError if it is gone."""
        ...

    def get_pass(self, identifier: str) -> ProviderPass:
        """By provider pass id or user-provided id; NotFoundError if unknown."""
        ...

    def list_templates(self) -> list[ProviderTemplate]: ...

    def set_voided(self, pass_id: str, voided: bool) -> ProviderPass:
        """Void (True) or unvoid (False) the pass; NotFoundError if it is gone."""
        ...

    def delete_pass(self, pass_id: str) -> None:
        """Delete the pass; NotFoundError if it is already gone."""
        ...

    def send_push(self, pass_id: str, message: str) -> None:
        """Send a push notification (a lock-screen message) to the pass's devices."""
        ...
