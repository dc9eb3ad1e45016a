"""The Airship Wallet platform's descriptor (registered in worker/providers/registry.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from worker.providers.airship import callbacks
from worker.providers.airship.settings import AirshipSandboxSettings, AirshipSettings
from worker.providers.common.kind import sandbox_kit
from worker.providers.port import (
    ClosableProvider,
    CredentialInfo,
    OnAttempt,
    PassCatalog,
    ProviderKind,
    TakeSlot,
)


def _settings(settings: Any) -> AirshipSettings:
    assert isinstance(settings, AirshipSettings)
    return settings


def build_client(settings: Any, on_attempt: OnAttempt | None) -> ClosableProvider:
    from worker.providers.airship.client import AirshipClient  # noqa: PLC0415

    return AirshipClient(_settings(settings), on_attempt=on_attempt)


def _actions() -> Mapping[str, Any]:
    from worker.providers.airship.actions import catalogue  # noqa: PLC0415

    return catalogue()


def _catalog(client: Any, take_slot: TakeSlot | None) -> PassCatalog:
    from worker.providers.airship.catalog import AirshipCatalog  # noqa: PLC0415

    return AirshipCatalog(client, take_slot)


def has_credentials(settings: Any) -> bool:
    return _settings(settings).has_credentials()


def budget_identity(settings: Any) -> str:
    """One budget per credential at one regional host (only a digest of it is used)."""
    s = _settings(settings)
    key = s.api_key.get_secret_value() if s.api_key is not None else ""
    return f"{s.api_base()}|{key}"


def describe_credential(settings: Any, client: Any) -> CredentialInfo:
    """Basic (a permanent project key and secret) or OAuth2 client credentials, whose current
    token's expiry is known once the client has fetched one."""
    s = _settings(settings)
    if s.auth == "basic":
        return CredentialInfo(auth_scheme="basic", region=s.region)
    token = getattr(client, "token", None)
    current = token() if callable(token) else None
    expires = getattr(current, "expires_at", None)
    return CredentialInfo(
        auth_scheme="oauth2_client_credentials",
        region=s.region,
        token_expires_at=(
            datetime.fromtimestamp(expires, tz=UTC) if isinstance(expires, int | float) else None
        ),
    )


def _overrides(settings: Any, base_url: str) -> dict[str, str]:
    assert isinstance(settings, AirshipSandboxSettings)
    base = base_url.rstrip("/").removesuffix("/v1")
    return {
        "base_url": f"{base}/v1",
        "token_url": f"{base}/token",
        "api_key": settings.project_key.get_secret_value(),
        "secret": settings.project_secret.get_secret_value(),
        "project_id": str(settings.project_id),
    }


KIND = ProviderKind(
    kind="airship",
    title="Airship Wallet",
    settings_model=AirshipSettings,
    build_client=build_client,
    # No points API; a push is a changed field's changeMessage (send_push does that).
    capabilities=frozenset({"void", "unvoid", "delete", "push"}),
    has_credentials=has_credentials,
    budget_identity=budget_identity,
    actions=_actions,
    catalog=_catalog,
    parse_callback=callbacks.parse_callback,
    callback_path=callbacks.CALLBACK_PATH,
    callback_events=callbacks.SUBSCRIBED,
    subscribe_callbacks=callbacks.subscribe,
    sandbox=sandbox_kit(
        "worker.providers.airship.sandbox.server",
        AirshipSandboxSettings,
        _overrides,
        simulate_device=callbacks.simulate_device,
    ),
    describe_credential=describe_credential,
    credential_hint=(
        "set PASSSYNC_PROVIDERS__{ACCOUNT}__API_KEY and __SECRET: the Wallet project's key and "
        "secret (auth: basic; dashboard Settings > API) or an OAuth client id and secret "
        "(auth: oauth2), and `region` (us or eu); leave them unset to use the local Airship "
        "sandbox under `passsync run`"
    ),
)
