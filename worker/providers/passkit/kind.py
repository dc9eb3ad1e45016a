"""The PassKit platform's descriptor (registered in worker/providers/registry.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from worker.providers.passkit import callbacks
from worker.providers.passkit.settings import PassKitSandboxSettings, PassKitSettings
from worker.providers.port import (
    ClosableProvider,
    OnAttempt,
    PassCatalog,
    ProviderKind,
    RunningSandbox,
    SandboxKit,
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


def _overrides(settings: Any, base_url: str) -> dict[str, str]:
    assert isinstance(settings, PassKitSandboxSettings)
    return {
        "base_url": base_url,
        "pass_link_base": f"{base_url}/_sandbox/pass",
        "api_key": settings.api_key.get_secret_value(),
        "secret": settings.api_secret.get_secret_value(),
    }


@contextmanager
def _running(settings: Any) -> Iterator[RunningSandbox]:
    from worker.providers.passkit.sandbox.server import running_sandbox  # noqa: PLC0415

    assert isinstance(settings, PassKitSandboxSettings)
    with running_sandbox(settings) as handle:
        yield handle


def _attach(base_url: str, settings: Any) -> RunningSandbox:
    from worker.providers.passkit.sandbox.server import attach  # noqa: PLC0415

    assert isinstance(settings, PassKitSandboxSettings)
    return attach(base_url, settings)


def _serve(settings: Any) -> None:
    from worker.providers.passkit.sandbox.server import serve  # noqa: PLC0415

    assert isinstance(settings, PassKitSandboxSettings)
    serve(settings)


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
    callback_events=callbacks.SUBSCRIBED,
    subscribe_callbacks=callbacks.subscribe,
    sandbox=SandboxKit(
        settings_model=PassKitSandboxSettings,
        account_overrides=_overrides,
        running=_running,
        serve=_serve,
        attach=_attach,
        simulate_device=callbacks.simulate_device,
    ),
    credential_hint=(
        "set PASSSYNC_PROVIDERS__{ACCOUNT}__API_KEY and __API_SECRET (PassKit portal: developer "
        "tools, REST credentials) or __LONG_LIVED_TOKEN, and `region` (pub1 or pub2); leave "
        "them unset to use the local PassKit sandbox under `passsync run`"
    ),
)
