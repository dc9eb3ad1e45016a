"""The port: what the core sees of a wallet platform. Concrete kinds live in providers/<kind>/.

A platform ("kind") is one package, `worker/providers/<kind>/`, whose `kind.py` defines a
`KIND = ProviderKind(...)` descriptor (see `worker/providers/registry.py` for the one line that
registers it). The core (engine, campaigns, scans, adoption, outbox, limiter, api, tasks,
commands) uses only the types of this module and the registry, never a kind's modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

# What a platform may lack; a rule using an action its account's platform lacks is refused by
# `passsync rules check` and at start-up (compile_rules), never at run time.
Capability = Literal["void", "unvoid", "delete", "push", "points"]
CAPABILITIES: tuple[Capability, ...] = ("void", "unvoid", "delete", "push", "points")


class AccountSettings(BaseModel):
    """Base of every kind's settings model: one account under `providers.<name>`.

    A kind subclasses it with its own fields (base URL, region, timeouts...). Secrets (any
    field named `api_key` or `secret`) come only from the environment:
    `PASSSYNC_PROVIDERS__<ACCOUNT>__API_KEY`.
    """

    model_config = ConfigDict(extra="forbid")

    kind: str
    # This account's own ceiling in the fleet limiter (calls per minute); none:
    # `ratelimit.per_minute`.
    rate_per_minute: int | None = None


class ProviderPass(BaseModel):
    """What the domain needs to know of a pass at the provider (its links included)."""

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


class TemplateField(BaseModel):
    """One field a template (or a PassKit program/tier) accepts."""

    model_config = ConfigDict(frozen=True)

    name: str
    # The value's type; "pass" marks a key of the pass itself that a rule may set (e.g.
    # Passcreator's barcodeValue), not one of the template's own fields.
    type: str = "text"
    required: bool = False
    # The platform's own id of the field, where a rule may name it by id instead (Passcreator's
    # property ids); None: by name only.
    id: str | None = None


class PassProvider(Protocol):
    """The calls the sync engine makes; every method raises only providers.errors types.

    `user_provided_id` is the neutral external id passsync gives a pass (sync.external_id_prefix
    + pass key + customer id): one pass per external id, a second create raises
    AlreadyExistsError (the engine then adopts the pass by `get_pass(external id,
    template_id=...)`, one lookup where external ids are unique per template or program).
    A method for a capability the kind lacks raises RejectedError.
    """

    name: str  # the kind, e.g. the registry key

    def create_pass(
        self, *, template_id: str, user_provided_id: str, fields: dict[str, Any]
    ) -> ProviderPass:
        """Create with the provider's uniqueness guard; AlreadyExistsError if the id is used."""
        ...

    def update_pass(self, pass_id: str, fields: dict[str, Any]) -> ProviderPass:
        """Merge `fields` into the pass; NotFoundError if it is gone."""
        ...

    def get_pass(self, identifier: str, *, template_id: str | None = None) -> ProviderPass:
        """By provider pass id or user-provided id; NotFoundError if unknown.

        `template_id`, when the caller knows it (the template the pass was created from),
        lets a platform whose external ids are unique per template or program look there
        only, in one call; a platform with account-wide ids ignores it."""
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


class AttemptRecord(Protocol):
    """One HTTP attempt as a client reports it to `on_attempt` (the audit): no header, body
    or key. A kind's client passes its own frozen dataclass with these attributes (and an
    optional `pass_ref`: the pass id or external id the call is about)."""

    @property
    def action(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def attempt(self) -> int: ...
    @property
    def outcome(self) -> str: ...


OnAttempt = Callable[[Any], None]


class ClosableProvider(PassProvider, Protocol):
    """A client built by a kind's factory: the port plus `close()` (its HTTP pool)."""

    def close(self) -> None: ...


# -- callbacks: provider -> passsync, as neutral adoption facts ---------------------------------

FactKind = Literal["created", "installed", "removed", "voided", "scanned"]


@dataclass(frozen=True)
class CallbackRequest:
    """One request to /providers/{account}/callbacks[/path], already authenticated by the core
    (its method is one of the kind's `callback_methods`, its path matches `callback_path`)."""

    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    method: str = "POST"
    path: str = ""  # what follows /callbacks ("" or e.g. "/v1/pass/install")


@dataclass(frozen=True)
class CallbackFact:
    """What one callback says happened to which pass; the core deduplicates by callback_id
    (per account) and applies it to the adoption state."""

    callback_id: str  # the delivery's id, else a digest of the event name and the body
    kind: FactKind
    provider_pass_id: str | None
    platform: str | None  # "ios", "android", or the provider's word lower-cased
    occurred_at: datetime | None  # None: when it was received
    payload: dict[str, Any]  # kept in the adoption ledger as received
    barcode: str | None = None  # the pass's barcode value, when the callback says it
    template: str | None = None  # the pass's template name, when the callback says it


class CallbackError(ValueError):
    """The callback body cannot be read (answered 400, message shown to the sender)."""


# -- reconciliation: the provider's passes, page by page ---------------------------------------


@dataclass(frozen=True)
class CatalogPass:
    """One pass as the provider lists it."""

    pass_id: str
    user_provided_id: str | None
    template_id: str | None
    voided: bool
    barcode: str | None = None
    active_devices: int | None = None


@dataclass(frozen=True)
class Page:
    passes: list[CatalogPass]
    next_cursor: str | None  # None: the sweep is complete


class PassCatalog(Protocol):
    """Pages of an account's passes; the cursor is the kind's own (an offset, a token...)."""

    def page(self, cursor: str | None, size: int) -> Page: ...


# Called before each provider request a catalog makes: takes a slot of the account's budget.
TakeSlot = Callable[[], None]


# -- sandboxes: a local stand-in for the platform ----------------------------------------------


@dataclass(frozen=True)
class SandboxPass:
    """A pass as the sandbox holds it, in neutral terms (for demos and the fault suite)."""

    pass_id: str
    external_id: str | None  # the user_provided_id passsync gave it
    template: str | None  # the template's name as rules write it
    fields: dict[str, Any]
    voided: bool = False
    deleted: bool = False


class RunningSandbox(Protocol):
    """A sandbox that is listening. The fault keys every kind's `configure` understands:
    latency_ms, error_500_probability, error_503_probability, commit_then_fail_probability,
    slow_probability, slow_ms, rate_limit_per_minute, seed."""

    @property
    def base_url(self) -> str: ...

    def account_overrides(self) -> dict[str, str]:
        """Settings that point an account at this sandbox (e.g. base_url, api_key)."""
        ...

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change behaviour at runtime; returns the whole behaviour."""
        ...

    def reset(self) -> None:
        """Empty the store, zero the stats, restore the start-up behaviour."""
        ...

    def stats(self) -> dict[str, Any]:
        """At least {"creates": int, "faults": {"500": n, "503": n, "commit_then_fail": n}}."""
        ...

    def state(self) -> list[SandboxPass]:
        """Every pass the sandbox holds, deleted ones included."""
        ...


@dataclass(frozen=True)
class SandboxKit:
    """How a kind's sandbox is configured and started."""

    # Has `host: str`, `port: int` (0: any free port) and `rate_limit_per_minute: int` (0:
    # none); an account of the kind holds one as its `sandbox` setting.
    settings_model: type[BaseModel]
    # (sandbox settings, its base URL) -> the account settings that point an account at it
    # (e.g. {"base_url": ..., "api_key": ...}); `passsync run` passes them as environment.
    account_overrides: Callable[[Any, str], dict[str, str]]
    # In a background thread of this process, until the block ends (tests, demos).
    running: Callable[[Any], AbstractContextManager[RunningSandbox]]
    # Blocking in the foreground until SIGINT/SIGTERM (`passsync sandbox`).
    serve: Callable[[Any], None]
    # The names its templates (or programs/tiers) answer to out of the box.
    templates: tuple[str, ...] = ("Loyalty Card", "Welcome Discount", "Event Ticket")
    # (base URL, sandbox settings) -> a RunningSandbox for one running elsewhere (a
    # `passsync sandbox` process): what `passsync demo` and bench/limiter inspect. None: the
    # demo cannot check this platform's own state (it reports that as a problem).
    attach: Callable[[str, Any], RunningSandbox] | None = None
    # Demo only: make the sandbox call back as if a phone saved ("install") or removed
    # ("remove") a pass: (sandbox base URL, pass id, action, platform) -> it called back.
    simulate_device: Callable[[str, str, str, str], bool] | None = None


# -- credentials: what can be said of an account's credential without showing it -------------


@dataclass(frozen=True)
class CredentialInfo:
    """An account's credential described for people (`passsync accounts`, /api/accounts):
    never the secret itself, nor any part or digest of it."""

    # How the account authenticates, in the platform's words: "api_key" (a static key in a
    # header), "jwt" (a token signed per request), "long_lived_token", "basic",
    # "oauth2_client_credentials", ...
    auth_scheme: str
    # The platform region the account lives in; None: the platform has no regions.
    region: str | None = None
    # When the token in use expires (UTC); None: the credential does not expire, or no token
    # has been fetched yet (a kind with expiring tokens reports it once its client has one).
    token_expires_at: datetime | None = None


def static_api_key(settings: Any, client: Any) -> CredentialInfo:
    """The default description: a static API key, no region, no expiry."""
    return CredentialInfo(auth_scheme="api_key")


# -- the descriptor --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderKind:
    """Everything the core needs to know of one platform; its package builds one as `KIND`.

    Only `kind`, `title`, `settings_model` and `build_client` are required; an absent optional
    part means the platform lacks it (no callbacks, no reconciliation, no sandbox...).
    """

    kind: str  # the registry key, e.g. "passkit"
    title: str  # shown to people
    settings_model: type[AccountSettings]
    # (account settings, on_attempt) -> client. Raises ConfigError-like ValueError when a
    # credential is missing; the client reports every HTTP attempt to on_attempt.
    build_client: Callable[[Any, OnAttempt | None], ClosableProvider]
    capabilities: frozenset[Capability] = frozenset(CAPABILITIES)
    # Whether the account's settings carry credentials (else `passsync run` starts a sandbox).
    has_credentials: Callable[[Any], bool] = lambda settings: True
    # What identifies one rate budget at the platform (e.g. base URL + API key); only a
    # digest of it is used (never logged, never stored in clear).
    budget_identity: Callable[[Any], str] = lambda settings: ""
    # Provider callbacks -> neutral facts (an empty list: an event passsync does not track).
    parse_callback: Callable[[CallbackRequest], list[CallbackFact]] | None = None
    # The HTTP methods the platform calls back with (others: 405 with this Allow), and the
    # paths it appends to the callbacks URL: a regular expression the path after /callbacks
    # must match in full (None: the callbacks URL itself only).
    callback_methods: frozenset[str] = frozenset({"POST"})
    callback_path: str | None = None
    # The events passsync subscribes callbacks for (when callbacks.events is empty), and
    # how: (client, callback URL of the account, token, events) -> the events newly added;
    # idempotent. None: callbacks are set up in the platform's own console.
    callback_events: tuple[str, ...] = ()
    subscribe_callbacks: Callable[[Any, str, str, tuple[str, ...]], list[str]] | None = None
    # (client from build_client, take_slot or None) -> catalog for reconciliation.
    catalog: Callable[[Any, TakeSlot | None], PassCatalog] | None = None
    # The agent/CLI action catalogue: name -> worker.actions.Action (lazy: a callable).
    actions: Callable[[], Mapping[str, Any]] | None = None
    # A template's field schema, (client from build_client, template id) -> the fields a pass
    # of it takes; checked against every field a rule sets by `passsync rules check
    # --provider`, `passsync doctor` and at worker start. None: the platform lists none.
    template_fields: Callable[[Any, str], list[TemplateField]] | None = None
    # Whether a field name the template does not list is still taken (PassKit keeps any
    # other name as a metaData entry); by default only listed names (or ids) are.
    takes_unlisted_field: Callable[[str], bool] = lambda name: False
    sandbox: SandboxKit | None = None
    # Lines for `passsync doctor` / error messages: how to set this kind's credentials.
    credential_hint: str = ""
    # (account settings, a client from build_client or None) -> the credential described
    # without its secret (`passsync accounts`, /api/accounts). With a client that has made a
    # call (the check), a kind with expiring tokens reports the current token's expiry.
    describe_credential: Callable[[Any, Any], CredentialInfo] = static_api_key
    # The account settings that hold secrets: never shown, accepted from the environment or
    # the secrets file (`credentials.secrets_file`), reloaded by `passsync accounts rotate`.
    secret_fields: tuple[str, ...] = ("api_key", "secret")
    extra: Mapping[str, Any] = field(default_factory=dict)

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities


def iter_pages(catalog: PassCatalog, size: int) -> Iterator[CatalogPass]:
    """Every pass of a catalog, following its cursors (a whole sweep)."""
    cursor: str | None = None
    while True:
        page = catalog.page(cursor, size)
        yield from page.passes
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
