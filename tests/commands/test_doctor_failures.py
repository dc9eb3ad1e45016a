"""`passsync doctor`: the failures its first tests leave out (issue 18, item 7): a rule's
template missing at the provider, a destination whose clock is off, the database server's
clock on Postgres, an unreachable database."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from typer.testing import CliRunner

from tests.actions.fixtures import LOYALTY, SANDBOX_KEY, Provider
from tests.commands.test_doctor import doctor, ready  # noqa: F401 - the fixture by name
from worker.cli import app
from worker.commands import doctor as module
from worker.stack import free_port


@pytest.mark.usefixtures("ready")
def test_a_rule_whose_template_is_gone_fails_the_templates_check(provider: Provider) -> None:
    # Given the default rule's template is deleted at the provider
    with httpx.Client(
        base_url=provider.sandbox.base_url, headers={"Authorization": SANDBOX_KEY}
    ) as http:
        assert http.delete(f"/api/pass-template/{LOYALTY}").status_code == 200
    # When doctor runs
    code, checks = doctor()
    # Then the templates check names the rule and its template, and the exit code is 1
    assert code == 1
    status, detail = checks["templates"]
    assert status == "fail" and "'Loyalty Card'" in detail and "loyalty_card" in detail
    assert checks["provider passcreator"][0] == "ok"


class FiveMinutesAhead(datetime):
    """This machine's clock, five minutes fast."""

    @classmethod
    def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + timedelta(minutes=5)  # type: ignore[arg-type]


@pytest.mark.usefixtures("ready")
def test_a_clock_off_by_minutes_against_a_destination_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given this machine's clock is five minutes ahead of the destination's Date header
    monkeypatch.setattr(module, "datetime", FiveMinutesAhead)
    # When doctor runs
    code, checks = doctor()
    # Then the clock check fails and says by how much, in which direction
    assert code == 1
    status, detail = checks["clock crm"]
    assert status == "fail" and detail.endswith(" s ahead of destination crm")
    assert 290 < float(detail.split()[0]) < 310


@pytest.mark.usefixtures("ready")
def test_on_postgres_the_database_servers_clock_is_checked(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", pg_url)
    code, checks = doctor()
    assert code == 0, checks
    assert checks["database"][0] == "ok"
    status, detail = checks["clock"]
    assert status == "ok" and detail.endswith(" the database server")


@pytest.mark.usefixtures("ready")
def test_an_unreachable_database_is_one_failed_check(monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = f"postgresql+psycopg://passsync@127.0.0.1:{free_port()}/passsync"
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", nowhere)
    code, checks = doctor()
    assert code == 1
    status, detail = checks["database"]
    assert status == "fail" and "unreachable" in detail and "Connection refused" in detail
    assert "clock" not in checks


def test_the_table_aligns_long_names_and_shows_brackets_as_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given checks with a long name and details holding square brackets
    found = [
        module.Check("config", "ok", "valid; 1 rule(s)"),
        module.Check("provider passcreator", "fail", "refused [401] at [bold]x[/bold]"),
    ]
    monkeypatch.setattr(module, "run_checks", lambda: iter(found))
    # When the table is printed
    result = CliRunner().invoke(app, ["doctor"])
    # Then every detail starts in one column, word for word
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "ok    config               valid; 1 rule(s)",
        "fail  provider passcreator refused [401] at [bold]x[/bold]",
    ]
