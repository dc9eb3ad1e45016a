"""The deploy files: every process docker-compose runs is a real `passsync` command."""

from __future__ import annotations

import re
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


def _requirement_names() -> set[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += [s for s in extra if not s.startswith("passsync")]
    return {_normal(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in specs}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            found[_normal(name)] = version
    return found


def test_the_constraints_pin_every_dependency_exactly() -> None:
    missing = _requirement_names() - set(pins())
    assert missing == set(), f"add to constraints.txt: {sorted(missing)}"
    assert "passsync" not in pins()  # the project itself is never pinned


def test_image_ci_make_and_readme_install_with_the_constraints() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "COPY pyproject.toml README.md constraints.txt" in dockerfile
    assert "pip install -c constraints.txt" in dockerfile
    for path in (".ci/run", "Makefile", "README.md"):
        text = (ROOT / path).read_text()
        assert "-c constraints.txt -e '.[dev]'" in text, path


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [
        line.split()[1]
        for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
        if line.startswith("USER ")
    ]
    assert users, "the image must set USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0")
    assert uid == "10001"  # the k8s manifests' runAsUser
