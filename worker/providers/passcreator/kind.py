"""The Passcreator platform's descriptor (registered in worker/providers/registry.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.providers.common.kind import sandbox_kit
from worker.providers.passcreator import callbacks
from worker.providers.passcreator.settings import PasscreatorSettings, SandboxSettings
from worker.providers.port import (
    ClosableProvider,
    OnAttempt,
    PassCatalog,
    ProviderKind,
    TakeSlot,
    TemplateField,
)


def _settings(settings: Any) -> PasscreatorSettings:
    assert isinstance(settings, PasscreatorSettings)
    return settings


def build_client(settings: Any, on_attempt: OnAttempt | None) -> ClosableProvider:
    from worker.providers.passcreator.client import PasscreatorClient  # noqa: PLC0415

    return PasscreatorClient(_settings(settings), on_attempt=on_attempt)


def _actions() -> Mapping[str, Any]:
    from worker.providers.passcreator.actions import catalogue  # noqa: PLC0415

    return catalogue()


def _catalog(client: Any, take_slot: TakeSlot | None) -> PassCatalog:
    from worker.providers.passcreator.catalog import PasscreatorCatalog  # noqa: PLC0415

    return PasscreatorCatalog(client, take_slot)


def _template_fields(client: Any, template_id: str) -> list[TemplateField]:
    """The client's `template_fields` (GET /api/pass-template/{id}, docs/passcreator.md)."""
    return list(client.template_fields(template_id))


def has_credentials(settings: Any) -> bool:
    return _settings(settings).api_key is not None


def budget_identity(settings: Any) -> str:
    """One budget per API key at one base URL (only a digest of it is used)."""
    pc = _settings(settings)
    key = pc.api_key.get_secret_value() if pc.api_key is not None else ""
    return f"{pc.base_url}|{key}"


def _overrides(settings: Any, base_url: str) -> dict[str, str]:
    assert isinstance(settings, SandboxSettings)
    return {"base_url": base_url, "api_key": settings.api_key.get_secret_value()}


KIND = ProviderKind(
    kind="passcreator",
    title="Passcreator",
    settings_model=PasscreatorSettings,
    build_client=build_client,
    has_credentials=has_credentials,
    actions=_actions,
    catalog=_catalog,
    template_fields=_template_fields,
    parse_callback=callbacks.parse_callback,
    callback_events=callbacks.SUBSCRIBED,
    subscribe_callbacks=callbacks.subscribe,
    budget_identity=budget_identity,
    sandbox=sandbox_kit(
        "worker.providers.passcreator.sandbox.server",
        SandboxSettings,
        _overrides,
        simulate_device=callbacks.simulate_device,
    ),
    credential_hint=(
        "set PASSSYNC_PROVIDERS__{ACCOUNT}__API_KEY (Passcreator: Settings > API key), or leave "
        "it unset to use the local sandbox under `passsync run`"
    ),
)
