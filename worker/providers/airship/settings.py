"""Settings of one Airship Wallet account and of the local Airship sandbox (docs/airship.md).

Every fact the references do not confirm is a setting here, with the documented or most
likely behaviour as its default; docs/airship.md lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from worker.providers.port import AccountSettings

Region = Literal["us", "eu"]
Auth = Literal["basic", "oauth2"]

# V-code (Airship's own code): the Wallet API's regional hosts.
API_BASES: dict[str, str] = {
    "us": "https://wallet-api.urbanairship.com/v1",
    "eu": "https://wallet-api.asnapieu.com/v1",
}
# V: "Use oauth2.asnapius.com for ... North American ... and oauth2.asnapieu.com for ... European".
TOKEN_URLS: dict[str, str] = {
    "us": "https://oauth2.asnapius.com/token",
    "eu": "https://oauth2.asnapieu.com/token",
}
# V: wpas passes, wadl adaptive links, wrpt statistics, wtmp templates (template by name).
DEFAULT_SCOPES = ("wpas", "wadl", "wrpt", "wtmp")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AirshipSandboxBehaviour(_Strict):
    """What the Airship sandbox does; all of it can be changed at runtime (/_sandbox/config)."""

    latency_ms: float = Field(default=0.0, ge=0)
    # No limit is documented (Airship's own clients map 429); a budget here answers 429.
    rate_limit_per_minute: int = Field(default=0, ge=0)
    send_retry_after: bool = True
    # Lifetime of the OAuth tokens it issues (Airship: 1 hour).
    token_lifetime_seconds: float = Field(default=3600.0, gt=0)
    # A request without `Api-Revision: 1.2` (U: what Airship answers; 400 here).
    require_api_revision: bool = True
    # Held after a write is applied, before the answer: a killed client changed the provider.
    answer_delay_ms: float = Field(default=0.0, ge=0)
    # Callbacks may only go to https (V); the sandbox allows http for local demos.
    callbacks_https_only: bool = False
    # Callbacks to {baseUrl}/v1/pass/install (V ops page) or {baseUrl}/pass/install (tutorial).
    callback_path_prefix: Literal["/v1", ""] = "/v1"
    default_page_size: int = Field(default=10, ge=1)
    error_500_probability: float = Field(default=0.0, ge=0, le=1)
    error_503_probability: float = Field(default=0.0, ge=0, le=1)
    commit_then_fail_probability: float = Field(default=0.0, ge=0, le=1)
    slow_probability: float = Field(default=0.0, ge=0, le=1)
    slow_ms: float = Field(default=2000.0, ge=0)
    seed: int = 0


class AirshipSandboxSettings(AirshipSandboxBehaviour):
    """Where the sandbox listens, the credentials it accepts, and its templates."""

    host: str = "127.0.0.1"
    port: int = Field(default=8092, ge=0, le=65535)
    # Basic auth: the Wallet project's key and secret.
    project_key: SecretStr = SecretStr("sandbox-airship-project-key")
    project_secret: SecretStr = SecretStr("sandbox-airship-project-secret")
    # OAuth2 client credentials (POST /token on the sandbox's own host).
    client_id: SecretStr = SecretStr("sandbox-airship-client-id")
    client_secret: SecretStr = SecretStr("sandbox-airship-client-secret")
    project_id: int = 12345
    # Template names; their ids are integers from 1000 on, in this order.
    templates: list[str] = ["Loyalty Card", "Welcome Discount", "Event Ticket"]
    # A JSON file that keeps the passes and the callback target across restarts (`passsync
    # run` puts it beside its database); none keeps everything in memory.
    store_path: Path | None = None


class AirshipSettings(AccountSettings):
    """One Airship Wallet account (`providers.<name>` with `kind: airship`)."""

    kind: Literal["airship"] = "airship"

    region: Region = "us"
    # Overrides the regional API base (…/v1), e.g. for the sandbox.
    base_url: str | None = None
    # "basic": `api_key` and `secret` are the Wallet project's key and secret (dashboard:
    # Settings > API). "oauth2": they are the OAuth client id and secret; tokens (1 hour)
    # are requested from the region's token endpoint, cached, refreshed before they expire
    # and once after a 401. Secrets only from the environment
    # (PASSSYNC_PROVIDERS__<ACCOUNT>__API_KEY and __SECRET).
    auth: Auth = "basic"
    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    token_url: str | None = None
    # U: "the HTTP and OAuth methods use different base URLs"; Airship's own tools still
    # call the API base with the bearer. None: the API base.
    oauth_base_url: str | None = None
    scopes: list[str] = list(DEFAULT_SCOPES)
    # V: "An app subject is required" (e.g. app:<key>); sent as `sub` (U: the field name).
    oauth_subject: str | None = None
    oauth_subject_field: str = "sub"
    # Refresh this long before the token's expiry (so no request carries an expired token).
    token_refresh_margin_seconds: float = Field(default=60.0, ge=0)
    # V: required on every call.
    api_revision: str = "1.2"
    # For callback registration (POST /project/{projectId}/settings/callback).
    project_id: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=10)
    backoff_seconds: float = Field(default=0.25, ge=0)
    backoff_max_seconds: float = Field(default=4.0, ge=0)
    # U: no limit or header documented; this header (else the default) says how long to wait.
    retry_after_header: str = "Retry-After"
    default_retry_after_seconds: float = Field(default=5.0, ge=0)
    # V: a duplicate external id answers 400, the same status as any validation error; a 400
    # is taken as a duplicate when its message matches, else after a GET finds the pass.
    duplicate_pattern: str = r"(?i)external ?id.*(exist|already|used|unique)|duplicate"
    # Void (V): headers.expirationDate.label "voided"; unvoid: label "valid" and a date
    # `unvoid_expiry_days` ahead.
    void_label: str = "voided"
    valid_label: str = "valid"
    unvoid_expiry_days: int = Field(default=730, ge=1)
    # The field a push message is written to, with changeMessage "%@" (Airship has no
    # documented push call: the lock-screen text is a changed field's changeMessage).
    push_field: str = "message"
    # Each changed field's changeMessage on a plain update (None: no lock-screen text).
    change_message: str | None = None
    # Adaptive links (wadl) as a pass's links; off: the pass's own public URL only.
    adaptive_links: bool = True
    landing_page_url: str | None = None
    page_size: int = Field(default=100, ge=1, le=1000)
    max_pages: int = Field(default=10_000, ge=1)
    # Per-route path overrides (see client.DEFAULT_PATHS), for paths that may differ.
    paths: dict[str, str] = {}
    sandbox: AirshipSandboxSettings = AirshipSandboxSettings()

    @field_validator("base_url", "token_url", "oauth_base_url", "landing_page_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("project_id", mode="before")
    @classmethod
    def _project_id(cls, value: object) -> object:
        # Airship's ids are integers; the environment may hand one over as a number.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _scopes(self) -> AirshipSettings:
        if self.auth == "oauth2" and "wpas" not in self.scopes:
            raise ValueError("scopes must include wpas (passes) for OAuth2")
        return self

    def api_base(self) -> str:
        """Where the Wallet calls go: base_url, else the region's host (oauth_base_url for
        OAuth2 when set)."""
        if self.auth == "oauth2" and self.oauth_base_url:
            return self.oauth_base_url
        return self.base_url or API_BASES[self.region]

    def token_endpoint(self) -> str:
        return self.token_url or TOKEN_URLS[self.region]

    def has_credentials(self) -> bool:
        return self.api_key is not None and self.secret is not None
