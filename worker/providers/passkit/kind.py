"""The PassKit platform's descriptor (registered in worker/providers/registry.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from worker.providers.common.kind import sandbox_kit
from worker.providers.passkit import callbacks
from worker.providers.passkit.settings import PassKitSandboxSettings, PassKitSettings
from worker.providers.port import (
    ClosableProvider,
    CredentialInfo,
    OnAttempt,
    PassCatalog,
    ProviderKind,
    TakeSlot,
    TemplateField,
)


def _settings(settings: Any) -> PassKitSettings:
    assert isinstance(settings, PassKitSettings)
    return settings


def build_client(settings: Any, on_attempt: OnAttempt | None) -> ClosableProvider:
    from worker.providers.passkit.client import PassKitClient  # noqa: PLC0415

    return PassKitClient(_settings(settings), on_attempt=on_attempt)


def _actions() -> Mapping[str, Any]:
    from worker.providers.passkit.actions import catalogue  # noqa: PLC0415

    return catalogue()


def _catalog(client: Any, take_slot: TakeSlot | None) -> PassCatalog:
    from worker.providers.passkit.catalog import PassKitCatalog  # noqa: PLC0415

    return PassKitCatalog(client, take_slot)


def _template_fields(client: Any, template_id: str) -> list[TemplateField]:
    from worker.providers.passkit.models import PERSON_FIELDS, template_fields  # noqa: PLC0415

    listed = [TemplateField(name=n, type=t) for n, t in template_fields()]
    return listed + [TemplateField(name=f"person.{n}") for n in sorted(PERSON_FIELDS)]


def _takes_unlisted_field(name: str) -> bool:
    """Any other name becomes a metaData entry; only an unknown `person.` field is refused
    (protojson knows Person's fields)."""
    return not name.startswith("person.")


def has_credentials(settings: Any) -> bool:
    return _settings(settings).has_credentials()


def budget_identity(settings: Any) -> str:
    """One budget per credential at one regional host (only a digest of it is used)."""
    pk = _settings(settings)
    key = pk.api_key.get_secret_value() if pk.api_key is not None else ""
    return f"{pk.api_base()}|{key}"


def describe_credential(settings: Any, client: Any) -> CredentialInfo:
    """A fresh JWT per request (no expiry to show), or a long-lived token whose `exp` claim,
    when it is a JWT that carries one, is its expiry."""
    pk = _settings(settings)
    if pk.auth == "jwt":
        return CredentialInfo(auth_scheme="jwt", region=pk.region)
    token = pk.api_key.get_secret_value() if pk.api_key is not None else ""
    return CredentialInfo(
        auth_scheme="long_lived_token", region=pk.region, token_expires_at=_jwt_expiry(token)
    )


def _jwt_expiry(token: str) -> datetime | None:
    import jwt  # noqa: PLC0415

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None  # not a JWT: its expiry is not known here
    exp = claims.get("exp")
    return datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None


def _overrides(settings: Any, base_url: str) -> dict[str, str]:
    assert isinstance(settings, PassKitSandboxSettings)
    return {
        "base_url": base_url,
        "pass_link_base": f"{base_url}/_sandbox/pass",
        "api_key": settings.api_key.get_secret_value(),
        "secret": settings.api_secret.get_secret_value(),
    }


KIND = ProviderKind(
    kind="passkit",
    title="PassKit",
    settings_model=PassKitSettings,
    build_client=build_client,
    has_credentials=has_credentials,
    budget_identity=budget_identity,
    actions=_actions,
    catalog=_catalog,
    template_fields=_template_fields,
    takes_unlisted_field=_takes_unlisted_field,
    parse_callback=callbacks.parse_callback,
    callback_methods=callbacks.METHODS,
    callback_events=callbacks.SUBSCRIBED,
    subscribe_callbacks=callbacks.subscribe,
    sandbox=sandbox_kit(
        "worker.providers.passkit.sandbox.server",
        PassKitSandboxSettings,
        _overrides,
        simulate_device=callbacks.simulate_device,
    ),
    describe_credential=describe_credential,
    credential_hint=(
        "set PASSSYNC_PROVIDERS__{ACCOUNT}__API_KEY and __SECRET (PassKit portal: developer "
        "tools, REST credentials), or `auth: long_lived_token` with the token in __API_KEY, "
        "and `region` (pub1 or pub2); leave them unset to use the local PassKit sandbox under "
        "`passsync run`"
    ),
)
