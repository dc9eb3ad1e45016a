"""Settings of a Passcreator account and of the Passcreator sandbox (`kind: passcreator`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from worker.providers.port import AccountSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SandboxBehaviour(_Strict):
    """What the sandbox does; every field can also be changed at runtime (POST /_sandbox/config).

    Most reproduce facts the Passcreator reference marks unconfirmed (U).
    """

    latency_ms: float = Field(default=0.0, ge=0)
    answer_delay_ms: float = Field(default=0.0, ge=0)
    rate_limit_per_minute: int = Field(default=0, ge=0)
    send_retry_after: bool = True
    create_status: Literal[200, 201] = 200
    unknown_template_status: Literal[400, 404] = 400
    duplicate_message: str = "The userProvidedId {user_provided_id} is already in use."
    async_omits_barcode: bool = True
    v3_accepts_user_provided_id: bool = False
    ignore_user_provided_id_param: bool = True
    page_next_base_url: str | None = None
    last_page_marker: Literal["null", "missing"] = "null"
    max_page_size: int = Field(default=1000, ge=1)
    error_500_probability: float = Field(default=0.0, ge=0, le=1)
    error_503_probability: float = Field(default=0.0, ge=0, le=1)
    commit_then_fail_probability: float = Field(default=0.0, ge=0, le=1)
    non_json_probability: float = Field(default=0.0, ge=0, le=1)
    # A slow answer: the request is held `slow_ms` before it is handled (past a client timeout).
    slow_probability: float = Field(default=0.0, ge=0, le=1)
    slow_ms: float = Field(default=2000.0, ge=0)
    # A pass property its template does not have (by name or property id): `reject` answers
    # 400 "Invalid data." naming each one in `errors` (nothing is written); `ignore` drops it
    # and writes the rest. Whether Passcreator refuses or drops one is unconfirmed (U).
    unknown_properties: Literal["reject", "ignore"] = "reject"
    seed: int = 0


# The properties of the templates the sandbox seeds by default: every field the shipped
# config.yaml's rules and usage rules set on them.
SEEDED_PROPERTIES: dict[str, list[str]] = {
    "Loyalty Card": ["firstName", "lastName", "email", "tier", "points", "visits"],
    "Welcome Discount": ["firstName", "couponCode"],
    "Event Ticket": ["firstName", "lastName", "event", "seat"],
}


class SandboxSettings(SandboxBehaviour):
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    api_key: SecretStr = SecretStr("sandbox-key")
    # The seeded templates: name -> its additional properties (a list of names gives each
    # one its properties from SEEDED_PROPERTIES, none for another name).
    templates: dict[str, list[str]] | list[str] = list(SEEDED_PROPERTIES)
    # A SQLite file that keeps the sandbox's passes, templates and hooks across restarts;
    # none keeps everything in memory.
    store_path: Path | None = None

    def seeded_templates(self) -> dict[str, list[str]]:
        """Template name -> its properties, as seeded."""
        if isinstance(self.templates, dict):
            return {name: list(props) for name, props in self.templates.items()}
        return {name: list(SEEDED_PROPERTIES.get(name, [])) for name in self.templates}


class PasscreatorSettings(AccountSettings):
    """One Passcreator account: `providers.<name>` with `kind: passcreator`."""

    kind: Literal["passcreator"] = "passcreator"
    base_url: str = "https://app.passcreator.com"
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_seconds: float = Field(default=0.5, ge=0)
    default_retry_after_seconds: float = Field(default=5.0, ge=0)
    # Passcreator documents a 400 for a reused userProvidedId but not its wording (§12.2).
    duplicate_pattern: str = r"(?i)unique|already|duplicate"
    # A create refused for its template id (the sandbox and, unconfirmed, Passcreator say
    # "Unknown template" with a 400): the engine lists the templates again and retries once.
    unknown_template_pattern: str = r"(?i)unknown template|template.*not (found|exist)"
    create_async: bool = False
    # No source names Passcreator's rate-limit headers (§9); Retry-After is our best guess.
    retry_after_header: str = "Retry-After"
    backoff_max_seconds: float = Field(default=8.0, ge=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # v3 list paging (§2.3): the maximum page size is unconfirmed; `page.next` pointed to
    # passcreator.com while the base URL is app.passcreator.com, so that host is allowed too.
    page_size: int = Field(default=100, ge=1, le=1000)
    max_pages: int = Field(default=1000, ge=1)
    page_next_hosts: list[str] = ["passcreator.com", "app.passcreator.com"]
    # How pass_exists looks a pass up: v1 GET /api/pass/{id} (V) or a v3 query (C), §4.5.
    exists_via: Literal["v1_get", "v3_query"] = "v1_get"
    # Per-action path overrides (e.g. {"get_template": "/api/pass-template/{id}"}) for the
    # endpoints whose real path is only seen in client code (see docs/passcreator.md).
    paths: dict[str, str] = {}
    # The local sandbox `passsync run` starts for this account while it has no api_key.
    sandbox: SandboxSettings = SandboxSettings()

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")
