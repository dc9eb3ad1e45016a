"""The import-linter contracts in pyproject.toml hold, and each catches the cycle it forbids.

CI runs `lint-imports` over the tree; these tests check the contracts themselves: each is kept
by today's tree and broken once one import of a known former cycle is put back.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.contracts.layers import LayersContract

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
NO_DOMAIN_CYCLE = "Sync over the outbox over the inbound ledger (no {sync, outbox, inbound} cycle)"
NO_SCANS_ADOPTION_CYCLE = "Adoption reads scans, never the other way (no {scans, adoption} cycle)"


def contract_options(name: str) -> dict[str, Any]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    (found,) = [c for c in config["contracts"] if c["name"] == name]
    return {key: value for key, value in found.items() if key not in ("name", "type")}


def check(graph: grimp.ImportGraph, name: str) -> tuple[bool, str]:
    contract = LayersContract(
        name=name, session_options={}, contract_options=contract_options(name)
    )
    result = contract.check(graph, verbose=False)
    return result.kept, str(result.metadata)


@pytest.fixture(scope="module")
def build() -> Any:
    def graph() -> grimp.ImportGraph:
        return grimp.build_graph("worker", exclude_type_checking_imports=True, cache_dir=None)

    return graph


def test_every_package_of_the_domain_is_a_real_package() -> None:
    # A folder without __init__.py is a namespace package: import-linter cannot see it, so a
    # contract naming it fails to load (the outbox was one).
    worker = PYPROJECT.parent / "worker"
    missing = [
        str(folder.relative_to(worker))
        for folder in worker.rglob("*")
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
        if not (folder / "__init__.py").exists()
    ]
    assert missing == []


@pytest.mark.parametrize("name", [NO_DOMAIN_CYCLE, NO_SCANS_ADOPTION_CYCLE])
def test_the_tree_keeps_the_contract(build: Any, name: str) -> None:
    kept, details = check(build(), name)
    assert kept, details


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        # the former cycles: the dead letter emitted from the ledger module ...
        ("worker.inbound.status", "worker.outbox.causes"),
        # ... the pass view built in the outbox from the mapping ...
        ("worker.outbox.causes", "worker.sync.models"),
        # ... and the sources evaluating the rule language inside sync
        ("worker.inbound.sources.fields", "worker.sync.rules"),
        ("worker.inbound.ledger", "worker.sync.engine"),
    ],
)
def test_putting_a_cycle_back_breaks_the_contract(build: Any, importer: str, imported: str) -> None:
    graph = build()
    graph.add_import(importer=importer, imported=imported)
    kept, _ = check(graph, NO_DOMAIN_CYCLE)
    assert not kept


def test_putting_the_scans_adoption_cycle_back_breaks_its_contract(build: Any) -> None:
    graph = build()
    graph.add_import(importer="worker.scans.usage", imported="worker.adoption.ledger")
    kept, _ = check(graph, NO_SCANS_ADOPTION_CYCLE)
    assert not kept
