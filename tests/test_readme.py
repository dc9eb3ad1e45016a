"""The README stays true: its settings table is the code's, its commands are real."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from worker.cli import app
from worker.config import settings_reference, settings_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_settings_table_is_generated_from_the_settings_model() -> None:
    block = README.split("<!-- settings:start -->")[1].split("<!-- settings:end -->")[0]
    assert block.strip() == settings_table().strip(), (
        "README settings table is stale: regenerate with `.venv/bin/python -m worker.config`"
    )


def test_every_setting_has_an_environment_name_in_the_readme() -> None:
    for _path, _default, env, _ in settings_reference():
        assert env in README


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith(".venv/bin/passsync demo")
    assert commands[1].endswith(".venv/bin/python -m pytest")


def test_every_passsync_command_the_readme_names_exists() -> None:
    named = set(re.findall(r"`passsync ([a-z]+)", README))
    assert {"run", "demo", "api", "worker", "beat", "sandbox", "db"} <= named
    for command in named:
        assert CliRunner().invoke(app, [command, "--help"]).exit_code == 0, command
