"""The registry of platforms (kinds) and the accounts the settings configure.

A kind registers with ONE line in `KINDS` below: its key and the module that defines
`KIND: ProviderKind`. Modules are imported on first use, so the core never imports a
platform's code (and a platform's HTTP client or sandbox is loaded only when used).

The core asks this module for an account: `account(settings, name)` (None: the default
account, `sync.default_account`), then uses its descriptor (`.kind`) and its settings
(`.settings`, the kind's own model), or `build_provider(settings, name)` for a client.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from worker.providers.port import (
    AccountSettings,
    ClosableProvider,
    CredentialInfo,
    ProviderKind,
)

if TYPE_CHECKING:  # pragma: no cover
    from worker.config import Settings

# kind -> module defining KIND. The first one is the kind of an install's legacy config
# (`providers: {<kind>: {...}}` without `kind:`) and of the default account.
KINDS: dict[str, str] = {
    "passcreator": "worker.providers.passcreator.kind",
    "passkit": "worker.providers.passkit.kind",
    "airship": "worker.providers.airship.kind",
}


class AccountSettingsError(ValueError):
    """One account's settings are invalid; `loc` is the setting's path, `msg` the problem."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {msg}")
        self.loc = loc
        self.msg = msg


class UnknownKindError(LookupError):
    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown provider kind {kind!r}; known: {', '.join(KINDS)}")


class UnknownAccountError(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown provider account {name!r}; configured: {', '.join(known)}")
        self.name = name


def kinds() -> list[str]:
    """Every registered kind, in registration order."""
    return list(KINDS)


def default_kind() -> str:
    return next(iter(KINDS))


@cache
def get_kind(kind: str) -> ProviderKind:
    """The descriptor of a registered kind (its module is imported now)."""
    module = KINDS.get(kind)
    if module is None:
        raise UnknownKindError(kind)
    descriptor = importlib.import_module(module).KIND
    if not isinstance(descriptor, ProviderKind) or descriptor.kind != kind:
        raise TypeError(f"{module}.KIND must be a ProviderKind with kind={kind!r}")
    return descriptor


def callback_methods() -> list[str]:
    """Every HTTP method some registered kind calls back with (the callbacks route's methods)."""
    found: set[str] = set()
    for kind in KINDS:
        descriptor = get_kind(kind)
        if descriptor.parse_callback is not None:
            found |= descriptor.callback_methods
    return sorted(found or {"POST"})


def settings_model(kind: str) -> type[AccountSettings]:
    return get_kind(kind).settings_model


@dataclass(frozen=True)
class Account:
    """One configured account: its name, its platform's descriptor and its settings."""

    name: str
    kind: ProviderKind
    settings: AccountSettings

    def build_client(self, on_attempt: Callable[[Any], None] | None = None) -> ClosableProvider:
        return self.kind.build_client(self.settings, on_attempt)

    @property
    def has_credentials(self) -> bool:
        return self.kind.has_credentials(self.settings)

    def describe_credential(self, client: Any = None) -> CredentialInfo:
        """Auth scheme, region and token expiry of this account's credential (no secret);
        `client`: one built by build_client that has made a call, for a token's expiry."""
        return self.kind.describe_credential(self.settings, client)

    def pointed_at(self, overrides: Mapping[str, Any]) -> AccountSettings:
        """This account's settings with `overrides` applied and validated (e.g. a sandbox's
        base URL and key from `SandboxKit.account_overrides`)."""
        return type(self.settings).model_validate({**self.settings.model_dump(), **overrides})

    @property
    def sandbox_settings(self) -> Any:
        """The settings of this account's sandbox (its `sandbox:`); None: the kind has none."""
        kit = self.kind.sandbox
        if kit is None:
            return None
        own = getattr(self.settings, "sandbox", None)
        return own if isinstance(own, kit.settings_model) else kit.settings_model()


def accounts(settings: Settings) -> dict[str, Account]:
    """Every configured account, by name (the settings always hold at least one)."""
    return {
        name: Account(name, get_kind(conf.kind), conf) for name, conf in settings.providers.items()
    }


def capabilities(settings: Settings) -> dict[str, tuple[str, frozenset[str]]]:
    """account -> (its platform's title, the capabilities it has), for compile_rules."""
    return {
        name: (acct.kind.title, frozenset(acct.kind.capabilities))
        for name, acct in accounts(settings).items()
    }


def account(settings: Settings, name: str | None = None) -> Account:
    """The named account, or the default one (`sync.default_account`) for None."""
    chosen = name or settings.sync.default_account
    assert chosen is not None  # set by the settings' validation
    conf = settings.providers.get(chosen)
    if conf is None:
        raise UnknownAccountError(chosen, list(settings.providers))
    return Account(chosen, get_kind(conf.kind), conf)


def build_provider(
    settings: Settings,
    account_name: str | None = None,
    *,
    on_attempt: Callable[[Any], None] | None = None,
) -> ClosableProvider:
    """The client of one account (default: the default account); `on_attempt` receives one
    record per HTTP attempt (the audit). Only edges (tasks, CLI, API wiring) call this."""
    return account(settings, account_name).build_client(on_attempt)


def validate_accounts(raw: Mapping[str, Any]) -> dict[str, AccountSettings]:
    """Raw `providers:` mapping -> each account's settings in its kind's model.

    An entry without `kind:` whose name is a registered kind is of that kind (today's
    `providers: {passcreator: {...}}`). Called by worker.config while validating settings.
    """
    result: dict[str, AccountSettings] = {}
    for name, conf in raw.items():
        if isinstance(conf, AccountSettings):
            result[name] = conf
            continue
        data = dict(conf or {})
        kind = data.get("kind") or (name if name in KINDS else None)
        where = ("providers", name)
        if kind is None:
            raise AccountSettingsError((*where, "kind"), f"required (one of: {', '.join(KINDS)})")
        if kind not in KINDS:
            raise AccountSettingsError((*where, "kind"), UnknownKindError(kind).args[0])
        data["kind"] = kind
        try:
            result[name] = settings_model(kind).model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise AccountSettingsError((*where, *first["loc"]), first["msg"]) from None
    return result
