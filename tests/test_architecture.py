"""Import rules from DESIGN.md: edges, domain and adapters stay apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "worker"
DOMAIN = ("inbound", "sync", "campaigns", "scans", "adoption", "retention")
CONCRETE_CLIENTS = (
    "worker.providers.passcreator",
    "worker.providers.passkit",
    "worker.providers.airship",
)
FORBIDDEN_IN_DOMAIN = (
    "fastapi",
    "starlette",
    "uvicorn",
    "celery",
    "kombu",
    "httpx",
    "worker.api",
    "worker.tasks",
    "worker.cli",
    *CONCRETE_CLIENTS,
)

# The action registry is shared by the CLI and the MCP server: it sees the client only through
# its Protocol and the pure model modules, never the HTTP client or an edge.
FORBIDDEN_IN_ACTIONS = (
    "fastapi",
    "starlette",
    "uvicorn",
    "celery",
    "kombu",
    "httpx",
    "mcp",
    "worker.api",
    "worker.tasks",
    "worker.cli",
    "worker.commands",
    "worker.providers.passcreator.client",
)


def imports_of(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(rel: Path, source: str) -> list[str]:
    """The import rules broken by one module of worker/ (path relative to worker/)."""
    top = rel.parts[0] if len(rel.parts) > 1 else ""
    found = []
    for name in imports_of(source):
        root = name.split(".")[0]
        in_sandbox = top == "providers" and "sandbox" in rel.parts[:-1]
        if root in ("fastapi", "starlette") and top != "api" and not in_sandbox:
            found.append(f"{rel}: {name} outside worker/api")
        if root in ("celery", "kombu") and top != "tasks":
            found.append(f"{rel}: {name} outside worker/tasks")
        if top in DOMAIN and name.startswith(FORBIDDEN_IN_DOMAIN):
            found.append(f"{rel}: domain imports {name}")
        if top == "actions" and name.startswith(FORBIDDEN_IN_ACTIONS):
            found.append(f"{rel}: actions imports {name}")
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_tree_follows_the_import_rules() -> None:
    problems = []
    for path in modules():
        problems += violations(path.relative_to(PACKAGE), path.read_text())
    assert problems == []


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("sync/engine.py", "import fastapi"),
        ("sync/engine.py", "from celery import shared_task"),
        ("inbound/ledger.py", "from worker.providers.passcreator.client import PasscreatorClient"),
        ("adoption/x.py", "import httpx"),
        ("cli.py", "from fastapi import FastAPI"),
        ("api/app.py", "import celery"),
        (
            "actions/registry.py",
            "from worker.providers.passcreator.client import PasscreatorClient",
        ),
        ("actions/registry.py", "from mcp.server.lowlevel import Server"),
    ],
)
def test_the_checker_catches_each_kind_of_violation(rel: str, source: str) -> None:
    assert violations(Path(rel), source) != []


def test_the_domain_may_use_the_port_and_the_database() -> None:
    source = "from worker.providers.port import PassProvider\nfrom worker.db import Base\n"
    assert violations(Path("sync/engine.py"), source) == []
