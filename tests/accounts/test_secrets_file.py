"""The secrets file: owner-only mode, one format, and it wins over the environment."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.accounts.conftest import ALL_SECRETS, PC_KEY, PK_KEY, PK_SECRET, Accounts
from worker.cli import app
from worker.config import ConfigError, load_settings


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_secrets_file_others_may_read_stops_start_up_in_one_line(
    accounts: Accounts, mode: int
) -> None:
    # Given a secrets file that its group or the world may read
    accounts.write_secrets({"PASSSYNC_PROVIDERS__BRAND_A__API_KEY": PC_KEY}, mode=mode)
    # When the settings are loaded
    with pytest.raises(ConfigError) as caught:
        load_settings()
    # Then one line names the file, its mode and the fix, and never the key
    message = str(caught.value)
    assert message == (
        f"secrets file {accounts.secrets} has mode {mode:04o}: it must be readable by its "
        f"owner only (chmod 600 {accounts.secrets})"
    )
    assert "\n" not in message
    assert PC_KEY not in message


def test_the_cli_refuses_a_group_readable_secrets_file_with_exit_2(accounts: Accounts) -> None:
    accounts.write_secrets({"PASSSYNC_PROVIDERS__BRAND_A__API_KEY": PC_KEY}, mode=0o640)
    result = CliRunner().invoke(app, ["accounts", "list"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "mode 0640" in str(result.exception)
    assert PC_KEY not in result.output


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(accounts: Accounts, mode: int) -> None:
    accounts.write_secrets(ALL_SECRETS, mode=mode)
    conf = load_settings().providers["brand_a"]
    assert conf.api_key.get_secret_value() == PC_KEY  # type: ignore[attr-defined]


def test_the_file_wins_over_the_environment(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a key in the environment and another in the secrets file
    monkeypatch.setenv("PASSSYNC_PROVIDERS__BRAND_A__API_KEY", "stale-key-from-env")
    monkeypatch.setenv("PASSSYNC_PROVIDERS__BRAND_A__TIMEOUT_SECONDS", "3")
    # When the settings are loaded
    settings = load_settings()
    # Then the file's key is used, and the environment still sets the other settings
    brand_a = settings.providers["brand_a"]
    assert brand_a.api_key.get_secret_value() == PC_KEY  # type: ignore[attr-defined]
    assert brand_a.timeout_seconds == 3  # type: ignore[attr-defined]
    brand_b = settings.providers["brand_b"]
    assert brand_b.secret.get_secret_value() == PK_SECRET  # type: ignore[attr-defined]


def test_comments_blank_lines_export_and_quotes_are_read(accounts: Accounts) -> None:
    accounts.secrets.write_text(
        "# rotated 2026-12-04\n\n"
        f"export PASSSYNC_PROVIDERS__BRAND_A__API_KEY='{PC_KEY}'\n"
        f'passsync_providers__brand_b__api_key="{PK_KEY}"\n'
        f"PASSSYNC_PROVIDERS__BRAND_B__SECRET = {PK_SECRET} \n"
        "PASSSYNC_PROVIDERS__BRAND_A__SECRET=\n"  # empty: as if absent (Passcreator has none)
    )
    settings = load_settings()
    assert settings.providers["brand_a"].api_key.get_secret_value() == PC_KEY  # type: ignore[attr-defined]
    assert settings.providers["brand_b"].api_key.get_secret_value() == PK_KEY  # type: ignore[attr-defined]
    assert settings.providers["brand_b"].secret.get_secret_value() == PK_SECRET  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"API_KEY={PC_KEY}", "line 2: expected PASSSYNC_PROVIDERS__<ACCOUNT>__<FIELD>=value"),
        (f"PASSSYNC_PROVIDERS__BRAND_A__API_KEY {PC_KEY}", "line 2: expected"),
        (f"PASSSYNC_SOURCES__CRM__SECRET={PC_KEY}", "line 2: expected"),
        (
            f"PASSSYNC_PROVIDERS__BRAND_A__BASE_URL={PC_KEY}",
            "line 2: BASE_URL is not a secret setting",
        ),
    ],
)
def test_a_line_that_is_not_a_provider_secret_is_refused_by_number_without_its_value(
    accounts: Accounts, line: str, expected: str
) -> None:
    accounts.secrets.write_text(f"# ok\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert PC_KEY not in str(caught.value)


def test_a_missing_secrets_file_is_named(accounts: Accounts) -> None:
    accounts.secrets.unlink()
    with pytest.raises(ConfigError, match=r"secrets file .*secrets.env: No such file"):
        load_settings()


def test_the_secrets_file_may_be_named_in_the_config_file(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PASSSYNC_CREDENTIALS__SECRETS_FILE")
    with accounts.config.open("a") as config:
        config.write(f"credentials: {{secrets_file: '{accounts.secrets}'}}\n")
    settings = load_settings()
    assert settings.credentials.secrets_file == accounts.secrets
    assert settings.providers["brand_a"].api_key.get_secret_value() == PC_KEY  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", [["worker"], ["api"], ["accounts", "list"]])
def test_a_process_refuses_to_start_with_an_open_secrets_file_in_one_line(
    accounts: Accounts, command: list[str]
) -> None:
    import os
    import subprocess
    import sys

    accounts.write_secrets(ALL_SECRETS, mode=0o644)
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", *command],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"passsync: secrets file {accounts.secrets} has mode 0644: it must be readable by its "
        f"owner only (chmod 600 {accounts.secrets})"
    ]
    assert PC_KEY not in done.stdout + done.stderr
