"""Settings of one PassKit account and of the local PassKit sandbox (docs/passkit.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from worker.providers.port import AccountSettings

Region = Literal["pub1", "pub2"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PassKitSandboxBehaviour(_Strict):
    """What the PassKit sandbox does; all of it can be changed at runtime (/_sandbox/config)."""

    latency_ms: float = Field(default=0.0, ge=0)
    # PassKit documents no rate limit; a budget here answers 429 (with Retry-After if told).
    rate_limit_per_minute: int = Field(default=0, ge=0)
    send_retry_after: bool = True
    # Webhooks with numeric enums (event 2, protocol 100), as PassKit's sample file shows,
    # instead of their names.
    webhook_numeric_enums: bool = False
    # Held after a write is applied, before the answer: a killed client changed the provider.
    answer_delay_ms: float = Field(default=0.0, ge=0)
    duplicate_status: Literal[400, 409] = 409
    # JWT checks (the measured behaviour): a token older than this is "issued too long ago",
    # one whose iat is ahead of the server clock by more than the skew "used before issued",
    # and one whose exp is further ahead than max_token_lifetime_seconds is refused.
    max_token_age_seconds: float = Field(default=60.0, gt=0)
    clock_skew_seconds: float = Field(default=3.0, ge=0)
    max_token_lifetime_seconds: float = Field(default=60.0, gt=0)
    default_list_limit: int = Field(default=25, ge=1)
    error_500_probability: float = Field(default=0.0, ge=0, le=1)
    error_503_probability: float = Field(default=0.0, ge=0, le=1)
    # After one drawn 503, this many further requests answer 503 too (a burst).
    error_503_burst: int = Field(default=0, ge=0)
    commit_then_fail_probability: float = Field(default=0.0, ge=0, le=1)
    # A slow answer: the request is held `slow_ms` before it is handled.
    slow_probability: float = Field(default=0.0, ge=0, le=1)
    slow_ms: float = Field(default=2000.0, ge=0)
    # A list stream that breaks off with a {"error"} line after some results (HTTP 200 sent).
    stream_error_probability: float = Field(default=0.0, ge=0, le=1)
    # A member key (or a `person` key) protojson does not know: `reject` answers 400 with
    # grpc-gateway's {"code": 3, "message": "proto: unknown field ..."} and writes nothing;
    # `ignore` drops it (protojson's DiscardUnknown) and writes the rest. metaData is an open
    # map, so its keys are never unknown.
    unknown_properties: Literal["reject", "ignore"] = "reject"
    seed: int = 0


class PassKitSandboxSettings(PassKitSandboxBehaviour):
    """Where the sandbox listens, the credentials it accepts, and its programs and tiers."""

    host: str = "127.0.0.1"
    port: int = Field(default=8091, ge=0, le=65535)
    api_key: SecretStr = SecretStr("sandbox-passkit-key")
    # At least 32 bytes: shorter HS256 keys draw a warning from PyJWT (RFC 7518 §3.2).
    api_secret: SecretStr = SecretStr("sandbox-passkit-secret-0123456789abcdef")
    long_lived_token: SecretStr = SecretStr("sandbox-passkit-long-lived-token")
    # Program name -> its tier names (the tier id is the lower-cased name without spaces).
    programs: dict[str, list[str]] = {
        "Loyalty Card": ["Base", "Gold"],
        "Welcome Discount": ["Base"],
        "Event Ticket": ["Base"],
    }
    # A SQLite file that keeps the members and webhook subscriptions across restarts; none
    # keeps everything in memory.
    store_path: Path | None = None

    @model_validator(mode="after")
    def _tiers(self) -> PassKitSandboxSettings:
        for program, tiers in self.programs.items():
            if not tiers:
                raise ValueError(f"program {program!r} needs at least one tier")
        return self


class PassKitSettings(AccountSettings):
    """One PassKit account (`providers.<name>` with `kind: passkit`); every unconfirmed fact
    is a setting here (docs/passkit.md)."""

    kind: Literal["passkit"] = "passkit"

    # An account lives in one region; a pub2 account authenticates on pub1 and then 404s.
    region: Region = "pub1"
    # Overrides the regional host (https://api.{region}.passkit.io), e.g. for the sandbox.
    base_url: str | None = None
    # Host of the pass pages (https://{region}.pskt.io/{memberId}); follows the region.
    pass_link_base: str | None = None
    # "jwt": every request carries a fresh HS256 JWT {uid: api_key, iat, exp} signed with
    # `secret` (the REST credentials). "long_lived_token": `api_key` holds a long-lived token,
    # sent as `Bearer <token>`. Both are secrets: only from the environment
    # (PASSSYNC_PROVIDERS__<ACCOUNT>__API_KEY, ...__SECRET).
    auth: Literal["jwt", "long_lived_token"] = "jwt"
    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    # Measured (C x1): iat must be a little in the past (server clock ~3 s behind, `iat` over
    # ~60 s old is refused) and exp at most ~60 s ahead. The vendor's script uses exp = iat+60.
    jwt_issued_before_seconds: float = Field(default=10.0, ge=0, le=55)
    jwt_expires_after_seconds: float = Field(default=50.0, gt=0, le=3600)
    timeout_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # 503 is documented as "Back off for 250ms and repeat request until successful"; we
    # repeat a bounded number of times with jittered exponential back-off from 250 ms.
    max_attempts: int = Field(default=4, ge=1, le=10)
    backoff_seconds: float = Field(default=0.25, ge=0)
    backoff_max_seconds: float = Field(default=4.0, ge=0)
    # No 429 is documented; if one comes, this header (else the default) says how long to wait.
    retry_after_header: str = "Retry-After"
    default_retry_after_seconds: float = Field(default=5.0, ge=0)
    # Enrolling a used externalId: 409 (C x1, grpc-gateway's ALREADY_EXISTS); a 400 whose
    # message matches duplicate_pattern counts too.
    duplicate_statuses: list[int] = [409]
    duplicate_pattern: str = r"(?i)already exists|duplicate|already in use"
    # Lists stream one JSON object per line and page by offset; limit 25 when omitted.
    page_size: int = Field(default=100, ge=1, le=1000)
    max_pages: int = Field(default=10_000, ge=1)
    # Void = expire: PUT /members/member/updateExpiry with a date in the past; unvoid sets the
    # expiry `unvoid_expiry_days` ahead (PassKit has no invalidate call of its own).
    void_backdate_seconds: int = Field(default=60, ge=1)
    unvoid_expiry_days: int = Field(default=3650, ge=1)
    # A rule's template names a program and a tier: "Program/Tier" (tier by name or id), or
    # just "Program" for the program's first tier.
    template_separator: str = Field(default="/", min_length=1)
    # The title of a message sent as a push (POST /message, then /message/send to the pass).
    message_title: str = "Update"
    # Per-route path overrides (see client.DEFAULT_PATHS), for paths that may differ.
    paths: dict[str, str] = {}
    # The local sandbox `passsync run` starts for this account when it has no credentials.
    sandbox: PassKitSandboxSettings = PassKitSandboxSettings()

    @field_validator("base_url", "pass_link_base")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def api_base(self) -> str:
        """Where the REST calls go: base_url, else the region's host."""
        return self.base_url or f"https://api.{self.region}.passkit.io"

    def link_base(self) -> str:
        """Where the pass pages are: pass_link_base, else the region's pass host."""
        return self.pass_link_base or f"https://{self.region}.pskt.io"

    def has_credentials(self) -> bool:
        """Whether the account can authenticate (a key and secret, or a long-lived token)."""
        if self.auth == "long_lived_token":
            return self.api_key is not None
        return self.api_key is not None and self.secret is not None
