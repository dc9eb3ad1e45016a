"""`passsync demo --provider KIND` and `--mixed`: which accounts and rules the demo sets up,
and how each account's expected passes are told apart (the stack run is `passsync demo`)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from rich.console import Console

from worker.config import Settings
from worker.demo import (
    DemoOptions,
    DemoReport,
    _print,
    demo_accounts,
    expected_by_account,
    generate_events,
)
from worker.providers import registry

WITH_SANDBOX = [k for k in registry.kinds() if registry.get_kind(k).sandbox is not None]


def test_the_default_demo_keeps_the_configured_account() -> None:
    assert demo_accounts(DemoOptions()) == {}


@pytest.mark.parametrize("kind", WITH_SANDBOX)
def test_provider_gives_one_account_of_that_kind(kind: str) -> None:
    assert demo_accounts(DemoOptions(provider=kind)) == {
        f"PASSSYNC_PROVIDERS__{kind.upper()}__KIND": kind,
        "PASSSYNC_SYNC__DEFAULT_ACCOUNT": kind,
    }


def test_a_kind_without_a_sandbox_is_refused() -> None:
    with pytest.raises(LookupError, match="no sandbox for provider 'nope'"):
        demo_accounts(DemoOptions(provider="nope"))


def test_mixed_puts_two_cards_on_two_accounts_and_checks_each_on_its_own(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = demo_accounts(DemoOptions(mixed=True))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = make_settings()
    accounts = list(settings.providers)
    assert len(accounts) == 2
    assert settings.sync.default_account == accounts[0]
    rules = json.loads(env["PASSSYNC_SYNC__RULES"])
    assert [r["actions"][0]["account"] for r in rules] == accounts
    events = generate_events(DemoOptions(customers=5, events=20))
    expected = expected_by_account(events, settings)
    assert sorted(expected) == sorted(accounts)
    first, second = (expected[a] for a in accounts)
    assert len(first) == len(second) == 5
    assert all(upid.startswith("passsync-loyalty-") for upid in first)
    assert all(upid.startswith("passsync-member-") for upid in second)


def test_the_report_table_shows_no_python_dict(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a report of two accounts
    report = DemoReport(accounts={"brand_a": "3 passes (passcreator)", "brand_b": "2 passes"})
    # When it is printed for people
    _print(report, Console(), as_json=False)
    shown = capsys.readouterr().out
    # Then each account is a line of its own, not a Python dict
    assert "{" not in shown and "'" not in shown
    assert "brand_a: 3 passes (passcreator)" in shown and "brand_b: 2 passes" in shown
