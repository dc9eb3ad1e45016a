"""`passsync accounts list|check|rotate`: every account described, one line per check, no
secret anywhere in the output or the logs."""

from __future__ import annotations

import json
import logging

import pytest
import redis
from typer.testing import CliRunner

from tests.accounts.conftest import ALL_SECRETS, PC_KEY, PK_KEY, PK_SECRET, Accounts
from tests.conftest import REDIS_TEST_URL
from worker.cli import app
from worker.config import ConfigError

SECRETS = (PC_KEY, PK_KEY, PK_SECRET)
OPS_TOKEN = "accounts-ops-token-0123456789"
VIEWER_TOKEN = "accounts-viewer-token-0123456789"


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_list_shows_every_account_without_a_secret(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given brand_a's key in the secrets file, brand_b's in the environment only
    accounts.write_secrets({"PASSSYNC_PROVIDERS__BRAND_A__API_KEY": PC_KEY})
    monkeypatch.setenv("PASSSYNC_PROVIDERS__BRAND_B__API_KEY", PK_KEY)
    monkeypatch.setenv("PASSSYNC_PROVIDERS__BRAND_B__SECRET", PK_SECRET)
    caplog.set_level(logging.DEBUG)
    # When the accounts are listed
    result = CliRunner().invoke(app, ["accounts", "list"])
    # Then a table names each account, its platform, region, auth scheme and source
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "account  platform     region  auth     source  token expires",
        "brand_a  Passcreator  -       api_key  file    -",
        "brand_b  PassKit      pub2    jwt      env     -",
    ]
    _no_secret(result.output + caplog.text)


def test_list_json_has_the_same_fields_and_no_secret(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(app, ["accounts", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "accounts": [
            {
                "name": "brand_a",
                "kind": "passcreator",
                "title": "Passcreator",
                "auth_scheme": "api_key",
                "region": None,
                "source": "file",
                "has_credentials": True,
                "token_expires_at": None,
            },
            {
                "name": "brand_b",
                "kind": "passkit",
                "title": "PassKit",
                "auth_scheme": "jwt",
                "region": "pub2",
                "source": "file",
                "has_credentials": True,
                "token_expires_at": None,
            },
        ]
    }
    _no_secret(result.output + caplog.text)


def test_check_reports_a_wrong_key_in_one_line_exits_1_and_the_other_account_works(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    # Given brand_b's secret is wrong (the PassKit sandbox refuses its JWTs)
    wrong = "wrong-secret-00000000000000000000000000"
    accounts.write_secrets({**ALL_SECRETS, "PASSSYNC_PROVIDERS__BRAND_B__SECRET": wrong})
    caplog.set_level(logging.DEBUG)
    # When the accounts are checked
    result = CliRunner().invoke(app, ["accounts", "check"])
    # Then one line per account: brand_a ok, brand_b refused; exit 1
    assert result.output.splitlines() == [
        "brand_a (Passcreator): ok: credential accepted",
        "brand_b (PassKit): refused: the provider refused the credential (HTTP 401)",
    ]
    assert result.exit_code == 1
    _no_secret(result.output + caplog.text)
    assert wrong not in result.output + caplog.text


def test_check_of_one_named_account_checks_only_it(accounts: Accounts) -> None:
    accounts.write_secrets({**ALL_SECRETS, "PASSSYNC_PROVIDERS__BRAND_B__API_KEY": "nope"})
    result = CliRunner().invoke(app, ["accounts", "check", "brand_a"])
    assert result.output.splitlines() == ["brand_a (Passcreator): ok: credential accepted"]
    assert result.exit_code == 0


def test_check_of_an_unknown_account_is_one_line(accounts: Accounts) -> None:
    result = CliRunner().invoke(app, ["accounts", "check", "brand_z"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == (
        "unknown provider account 'brand_z'; configured: brand_a, brand_b"
    )


def test_check_json_carries_the_status_of_each_account(accounts: Accounts) -> None:
    accounts.write_secrets({**ALL_SECRETS, "PASSSYNC_PROVIDERS__BRAND_A__API_KEY": "nope"})
    result = CliRunner().invoke(app, ["accounts", "check", "--json"])
    found = {a["name"]: (a["status"], a["detail"]) for a in json.loads(result.output)["accounts"]}
    assert found == {
        "brand_a": ("refused", "the provider refused the credential (HTTP 401)"),
        "brand_b": ("ok", "credential accepted"),
    }
    assert result.exit_code == 1


def test_check_of_an_unreachable_provider_exits_2(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSSYNC_PROVIDERS__BRAND_A__BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PASSSYNC_PROVIDERS__BRAND_A__MAX_ATTEMPTS", "1")
    result = CliRunner().invoke(app, ["accounts", "check"])
    lines = result.output.splitlines()
    assert lines[0].startswith("brand_a (Passcreator): unavailable: ")
    assert lines[1] == "brand_b (PassKit): ok: credential accepted"
    assert result.exit_code == 2


@pytest.fixture
def shared_redis(monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    from urllib.parse import urlsplit

    from tests.conftest import need_service

    parts = urlsplit(REDIS_TEST_URL)
    need_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    monkeypatch.setenv("PASSSYNC_BROKER_URL", REDIS_TEST_URL)
    monkeypatch.setenv("PASSSYNC_CREDENTIALS__GENERATION_KEY", "test:accounts:generation")
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SECRET", OPS_TOKEN)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SCOPES", '["read", "write"]')
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__VIEWER__SECRET", VIEWER_TOKEN)
    monkeypatch.setenv("PASSSYNC_TOKEN", OPS_TOKEN)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.delete("test:accounts:generation")
    return client


def test_rotate_starts_a_new_generation_for_every_process(
    accounts: Accounts, shared_redis: redis.Redis
) -> None:
    first = CliRunner().invoke(app, ["accounts", "rotate"])
    second = CliRunner().invoke(app, ["accounts", "rotate"])
    assert first.exit_code == 0, first.output
    assert second.output.startswith("credential generation 2: every passsync process reloads")
    assert shared_redis.get("test:accounts:generation") == b"2"
    _no_secret(first.output + second.output)


def test_rotate_to_a_refused_credential_changes_nothing(
    accounts: Accounts, shared_redis: redis.Redis
) -> None:
    # Given a secrets file whose new brand_a key the provider refuses
    accounts.write_secrets({**ALL_SECRETS, "PASSSYNC_PROVIDERS__BRAND_A__API_KEY": "typo"})
    # When rotating
    result = CliRunner().invoke(app, ["accounts", "rotate"])
    # Then it says so, exits 1, and no process is told to reload
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "brand_a (Passcreator): refused: the provider refused the credential (HTTP 401)",
        "nothing reloaded: fix the credential (or pass --no-check to reload anyway)",
    ]
    assert shared_redis.get("test:accounts:generation") is None
    # ... unless told to anyway
    forced = CliRunner().invoke(app, ["accounts", "rotate", "--no-check"])
    assert forced.exit_code == 0
    assert shared_redis.get("test:accounts:generation") == b"1"


def test_rotate_with_an_invalid_secrets_file_changes_nothing(
    accounts: Accounts, shared_redis: redis.Redis
) -> None:
    accounts.write_secrets(ALL_SECRETS, mode=0o644)
    result = CliRunner().invoke(app, ["accounts", "rotate"])
    assert isinstance(result.exception, ConfigError)
    assert shared_redis.get("test:accounts:generation") is None


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "passsync: this command changes state and needs an admin token"),
        ("not-a-token", "passsync: wrong token: PASSSYNC_TOKEN matches none of the admin tokens"),
        (VIEWER_TOKEN, "passsync: token viewer lacks the write scope"),
    ],
)
def test_rotate_needs_an_admin_token_with_the_write_scope(
    accounts: Accounts,
    shared_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    token: str | None,
    expected: str,
) -> None:
    if token is None:
        monkeypatch.delenv("PASSSYNC_TOKEN")
    else:
        monkeypatch.setenv("PASSSYNC_TOKEN", token)
    result = CliRunner().invoke(app, ["accounts", "rotate"])
    assert result.exit_code == 2
    assert result.stderr.startswith(expected)
    assert shared_redis.get("test:accounts:generation") is None


def test_rotate_without_a_shared_redis_says_what_to_do(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SECRET", OPS_TOKEN)
    monkeypatch.setenv("PASSSYNC_ADMIN_TOKENS__OPS__SCOPES", '["write"]')
    monkeypatch.setenv("PASSSYNC_TOKEN", OPS_TOKEN)
    result = CliRunner().invoke(app, ["accounts", "rotate", "--no-check"])
    assert isinstance(result.exception, ConfigError)
    assert "send SIGHUP to each passsync process" in str(result.exception)


def test_check_of_an_account_without_credentials_says_which_settings_to_set(
    accounts: Accounts,
) -> None:
    # Given brand_b (PassKit) has no credentials (and no base URL: the local sandbox)
    accounts.config.write_text(
        "providers:\n"
        f"  brand_a: {{kind: passcreator, base_url: '{accounts.pc_url}'}}\n"
        "  brand_b: {kind: passkit}\n"
    )
    accounts.write_secrets({"PASSSYNC_PROVIDERS__BRAND_A__API_KEY": PC_KEY})
    result = CliRunner().invoke(app, ["accounts", "check"])
    assert result.output.splitlines()[1] == (
        "brand_b (PassKit): missing: no credentials: set PASSSYNC_PROVIDERS__BRAND_B__API_KEY "
        "and __SECRET (PassKit portal: developer tools, REST credentials), or `auth: "
        "long_lived_token` with the token in __API_KEY, and `region` (pub1 or pub2); leave them "
        "unset to use the local PassKit sandbox under `passsync run`"
    )
    assert result.exit_code == 1
