"""The deploy files: every process docker-compose runs is a real `passsync` command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from worker.cli import app

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def resolve(argv: list[str]) -> str:
    """Parse argv as the CLI would (with --help, so nothing runs); raise if it is not valid."""
    result = CliRunner().invoke(app, [*argv, "--help"])
    if result.exit_code != 0:
        raise LookupError(f"passsync {' '.join(argv)}: {result.output.strip()[-300:]}")
    return result.output


def passsync_services() -> dict[str, list[str]]:
    services = compose()["services"]
    return {
        name: spec["command"]
        for name, spec in services.items()
        if isinstance(spec.get("command"), list) and spec["command"][0] == "passsync"
    }


def test_compose_has_the_production_roles_with_health_checks() -> None:
    services = compose()["services"]
    for role in ("postgres", "redis", "api", "worker-realtime", "worker-bulk", "beat"):
        assert role in services, role
        assert "healthcheck" in services[role], role
    assert set(passsync_services()) == {"migrate", "api", "worker-realtime", "worker-bulk", "beat"}


def test_compose_workers_serve_both_queues_between_them() -> None:
    queues: set[str] = set()
    for name, argv in passsync_services().items():
        if argv[1] == "worker":
            queues |= set(argv[argv.index("--queues") + 1].split(","))
            # The health check pings this worker by the name it runs under.
            check = compose()["services"][name]["healthcheck"]["test"]
            assert check[check.index("--name") + 1] == argv[argv.index("--name") + 1]
    assert queues == {"realtime", "bulk"}


@pytest.mark.parametrize("service", ["migrate", "api", "worker-realtime", "worker-bulk", "beat"])
def test_every_compose_command_is_a_real_passsync_command(service: str) -> None:
    argv = passsync_services()[service]
    assert "Usage: passsync" in resolve(argv[1:])


def test_the_checker_rejects_a_command_that_does_not_exist() -> None:
    with pytest.raises(LookupError):
        resolve(["wroker"])
    with pytest.raises(LookupError):
        resolve(["worker", "--no-such-option"])


@pytest.mark.parametrize("service", ["api", "worker-realtime", "worker-bulk", "beat"])
def test_every_health_check_is_a_real_passsync_command(service: str) -> None:
    argv = compose()["services"][service]["healthcheck"]["test"]
    assert argv[:2] == ["CMD", "passsync"]
    assert "Usage: passsync" in resolve(argv[2:])


def test_dockerfile_runs_a_real_passsync_command() -> None:
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    cmd = next(line for line in lines if line.startswith("CMD "))
    argv = yaml.safe_load(cmd[4:])
    assert argv[0] == "passsync"
    resolve(argv[1:])


def test_compose_keeps_secrets_out_of_the_file() -> None:
    env = compose()["x-passsync"]["environment"]
    for key, value in env.items():
        if key.endswith(("SECRET", "API_KEY")):
            assert str(value).startswith("${"), key
