"""The port's credential description: scheme, region and expiry per kind, never the secret."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt

from worker.config import Settings
from worker.providers import registry
from worker.providers.port import CredentialInfo, ProviderKind, static_api_key

SECRET = "a-very-secret-key-0123456789abcdef-xyz"


def test_passcreator_is_a_static_api_key_without_region_or_expiry() -> None:
    # Given a Passcreator account with a key
    settings = Settings(providers={"pc": {"kind": "passcreator", "api_key": SECRET}})
    # When its credential is described
    info = registry.account(settings, "pc").describe_credential()
    # Then it is a static API key and says nothing of the key itself
    assert info == CredentialInfo(auth_scheme="api_key", region=None, token_expires_at=None)
    assert SECRET not in repr(info)


def test_passkit_jwt_names_its_region_and_has_no_expiry() -> None:
    settings = Settings(
        providers={"pk": {"kind": "passkit", "region": "pub2", "api_key": "k", "secret": SECRET}}
    )
    info = registry.account(settings, "pk").describe_credential()
    assert info == CredentialInfo(auth_scheme="jwt", region="pub2", token_expires_at=None)


def test_passkit_long_lived_jwt_token_reports_its_exp_claim() -> None:
    # Given a long-lived token that is a JWT with an exp claim
    exp = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    token = jwt.encode({"uid": "x", "exp": int(exp.timestamp())}, SECRET, algorithm="HS256")
    settings = Settings(
        providers={"pk": {"kind": "passkit", "auth": "long_lived_token", "api_key": token}}
    )
    # When it is described
    info = registry.account(settings, "pk").describe_credential()
    # Then the expiry is the claim's, and the token is not in the description
    assert info == CredentialInfo(
        auth_scheme="long_lived_token", region="pub1", token_expires_at=exp
    )
    assert token not in repr(info)


def test_passkit_long_lived_token_that_is_not_a_jwt_has_no_known_expiry() -> None:
    settings = Settings(
        providers={"pk": {"kind": "passkit", "auth": "long_lived_token", "api_key": "opaque"}}
    )
    info = registry.account(settings, "pk").describe_credential()
    assert info.auth_scheme == "long_lived_token"
    assert info.token_expires_at is None


def test_a_kind_that_says_nothing_gets_the_neutral_default() -> None:
    kind = ProviderKind(
        kind="x",
        title="X",
        settings_model=registry.settings_model("passcreator"),
        build_client=lambda settings, hook: None,  # type: ignore[arg-type,return-value]
    )
    assert kind.describe_credential is static_api_key
    assert kind.describe_credential(None, None) == CredentialInfo(auth_scheme="api_key")
    assert kind.secret_fields == ("api_key", "secret")
