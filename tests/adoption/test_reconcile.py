"""Reconciliation on the sandbox finds and repairs each kind of drift, page by page."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from tests.adoption.conftest import seed_mapping
from worker.adoption.models import Drift
from worker.adoption.reconcile import ReconcileResult, parse_user_provided_id
from worker.config import Settings
from worker.db import Database
from worker.providers.passcreator.catalog import PasscreatorCatalog
from worker.providers.passcreator.client import PasscreatorClient
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import PasscreatorSettings, SandboxSettings
from worker.sync.models import PassMapping
from worker.tasks.reconcile import run_once

KEY = "reconcile-sandbox-key"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(SandboxSettings(port=0, api_key=SecretStr(KEY))) as handle:
        yield handle


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[PasscreatorClient]:
    sandbox.reset()
    settings = PasscreatorSettings(
        base_url=sandbox.base_url, api_key=SecretStr(KEY), max_attempts=1, backoff_seconds=0
    )
    with PasscreatorClient(settings) as passcreator:
        yield passcreator


def drifted(db: Database, client: PasscreatorClient, sandbox: SandboxHandle) -> dict[str, str]:
    """Four passes at the provider and three kinds of drift; returns name -> pass id."""
    template = client.list_templates()[0].template_id
    ids = {}
    for name, upid in (
        ("fine", "passsync-loyalty-cus_1"),
        ("gone", "passsync-loyalty-cus_2"),
        ("voided", "passsync-loyalty-cus_3"),
        ("unmapped", "passsync-welcome-cus_4"),
        ("foreign", "made-by-hand-7"),
    ):
        ids[name] = client.create_pass(
            template_id=template, user_provided_id=upid, fields={}
        ).pass_id
    for name, customer in (("fine", "cus_1"), ("gone", "cus_2"), ("voided", "cus_3")):
        seed_mapping(db, customer, "loyalty", ids[name], template=template)
    sandbox.delete_externally(ids["gone"])
    client.set_voided(ids["voided"], True)
    return ids


def sweep(
    settings: Settings, db: Database, client: PasscreatorClient, *, repair: bool
) -> list[ReconcileResult]:
    """Runs until one sweep completes."""
    results: list[ReconcileResult] = []
    while not results or not results[-1].sweep_complete:
        results.append(run_once(settings, db, PasscreatorCatalog(client, None), repair=repair))
        assert len(results) < 20
    return results


def mappings(db: Database) -> dict[str, tuple[str, str | None]]:
    with db.session() as session:
        rows = session.scalars(select(PassMapping).order_by(PassMapping.customer_id))
        return {r.customer_id: (r.status, r.provider_pass_id) for r in rows}


def drift_rows(db: Database) -> list[tuple[str, str | None, str]]:
    with db.session() as session:
        rows = session.scalars(select(Drift).order_by(Drift.kind))
        return [(d.kind, d.provider_pass_id, d.action) for d in rows]


def test_repair_mode_finds_and_repairs_each_drift_kind_page_by_page(
    make_settings: Callable[..., Settings],
    db: Database,
    client: PasscreatorClient,
    sandbox: SandboxHandle,
) -> None:
    # Given each kind of drift, and two passes read per run
    ids = drifted(db, client, sandbox)
    settings = make_settings(reconcile={"passes_per_run": 2, "repair": "repair"})
    # When reconciliation sweeps the provider's passes
    results = sweep(settings, db, client, repair=True)
    # Then it took two runs (four live passes), and each drift is found and repaired here
    assert [r.read for r in results] == [2, 2]
    assert drift_rows(db) == [
        ("missing_at_provider", ids["gone"], "repaired"),
        ("unmapped_at_provider", ids["unmapped"], "repaired"),
        ("voided_at_provider", ids["voided"], "repaired"),
    ]
    assert mappings(db) == {
        "cus_1": ("active", ids["fine"]),
        "cus_2": ("deleted", None),
        "cus_3": ("voided", ids["voided"]),
        "cus_4": ("active", ids["unmapped"]),
    }
    # And a second sweep finds nothing new
    again = sweep(settings, db, client, repair=True)
    assert [d for r in again for d in r.drift] == []


def test_report_mode_records_drift_and_changes_nothing(
    make_settings: Callable[..., Settings],
    db: Database,
    client: PasscreatorClient,
    sandbox: SandboxHandle,
) -> None:
    # Given each kind of drift
    ids = drifted(db, client, sandbox)
    before = mappings(db)
    settings = make_settings(reconcile={"passes_per_run": 500})
    # When reconciliation runs in report mode
    sweep(settings, db, client, repair=False)
    # Then the drift is reported and no mapping changed
    assert [(k, a) for k, _, a in drift_rows(db)] == [
        ("missing_at_provider", "reported"),
        ("unmapped_at_provider", "reported"),
        ("voided_at_provider", "reported"),
    ]
    assert mappings(db) == before
    assert ids["foreign"] not in [p for _, p, _ in drift_rows(db)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("passsync-loyalty-cus_1", ("loyalty", "cus_1")),
        ("passsync-welcome-a-b", ("welcome", "a-b")),
        ("passsync-loyalty-~abc123", None),
        ("other-loyalty-cus_1", None),
        (None, None),
    ],
)
def test_user_provided_ids_are_parsed_back_only_when_ours(
    value: str | None, expected: tuple[str, str] | None
) -> None:
    assert parse_user_provided_id("passsync", value) == expected
