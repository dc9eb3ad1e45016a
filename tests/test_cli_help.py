"""Help texts are current (issue 18, item 8): no doubled brackets in a usage line (`replay
[[ID]]`, then `outbox redeliver [[EVENT]]`), and beat's help names the jobs it schedules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import click
import pytest
import typer

from worker.cli import app


def every_command() -> Iterator[tuple[str, click.Command, click.Context]]:
    root = typer.main.get_command(app)

    def walk(command: click.Command, ctx: click.Context, path: str) -> Iterator[Any]:
        yield path, command, ctx
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, click.Context(sub, info_name=name, parent=ctx), f"{path} {name}")

    yield from walk(root, click.Context(root, info_name="passsync"), "passsync")


COMMANDS = list(every_command())


@pytest.mark.parametrize(("path", "command", "ctx"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_no_usage_line_doubles_its_brackets(
    path: str, command: click.Command, ctx: click.Context
) -> None:
    usage = command.get_usage(ctx)
    assert "[[" not in usage and "]]" not in usage, usage
    assert (command.help or "").strip(), f"{path} has no help"


def test_the_optional_ids_read_as_one_optional_argument() -> None:
    usages = {path: command.get_usage(ctx) for path, command, ctx in COMMANDS}
    assert usages["passsync events replay"].endswith("[OPTIONS] [ID]")
    assert usages["passsync outbox redeliver"].endswith("[OPTIONS] [EVENT]")


def test_beat_help_names_every_job_it_schedules() -> None:
    # Given the jobs beat schedules (read in a process of its own: configuring the Celery
    # app is global)
    script = (
        "import json; from worker.config import load_settings; "
        "from worker.tasks.app import configure; "
        "print(json.dumps(sorted(configure(load_settings()).conf.beat_schedule)))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSSYNC_")}
    env["PASSSYNC_BROKER_URL"] = "redis://127.0.0.1:1/0"  # never connected to
    listed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    jobs = set(json.loads(listed.stdout))
    # Then its help names each (a job added to the schedule needs a word here and there)
    words = {
        "sweep-pending-events": "pending-event",
        "sweep-scans": "scan sweeper",
        "campaign-tick": "campaign dispatch",
        "deliver-outbox": "outbound deliveries",
        "reconcile-passes": "reconcile",
        "purge-audit-log": "purges",
    }
    (beat,) = [c for path, c, _ctx in COMMANDS if path == "passsync beat"]
    text = " ".join((beat.help or "").split())
    assert set(words) <= jobs
    assert [job for job in sorted(words) if words[job] not in text] == []
    assert "later" not in text
