"""Usage rules with the real Passcreator client against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.api.conftest import RecordingEnqueue
from tests.scans.conftest import post_scans, scan
from worker.config import Settings
from worker.db import Database, utcnow
from worker.providers.passcreator.client import PasscreatorClient
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import (
    SEEDED_PROPERTIES,
    PasscreatorSettings,
    SandboxSettings,
)
from worker.scans.ledger import pending_scan_ids
from worker.scans.usage import UsageContext, process_scan
from worker.sync.models import PassMapping, PassStatus

KEY = "scans-sandbox-key"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    # The Loyalty Card also has the property the visit rule counts scan points into.
    card = [*SEEDED_PROPERTIES["Loyalty Card"], "scanPoints"]
    templates = SEEDED_PROPERTIES | {"Loyalty Card": card}
    settings = SandboxSettings(port=0, api_key=SecretStr(KEY), templates=templates)
    with running_sandbox(settings) as handle:
        yield handle


@pytest.fixture
def passcreator(sandbox: SandboxHandle) -> Iterator[PasscreatorClient]:
    sandbox.reset()
    settings = PasscreatorSettings(
        base_url=sandbox.base_url, api_key=SecretStr(KEY), max_attempts=1, backoff_seconds=0
    )
    with PasscreatorClient(settings) as client:
        yield client


def issue(db: Database, client: PasscreatorClient, customer: str, key: str) -> str:
    templates = {t.name: t.template_id for t in client.list_templates()}
    template = templates["Welcome Discount" if key == "welcome" else "Loyalty Card"]
    upid = f"passsync-{key}-{customer}"
    created = client.create_pass(template_id=template, user_provided_id=upid, fields={})
    with db.session() as session:
        session.add(
            PassMapping(
                provider="passcreator",
                customer_id=customer,
                pass_key=key,
                user_provided_id=upid,
                provider_pass_id=created.pass_id,
                template_id=template,
                status=PassStatus.ACTIVE,
            )
        )
    return created.pass_id


def test_coupon_and_loyalty_scans_change_the_passes_at_the_sandbox(  # noqa: PLR0917
    client: TestClient,
    db: Database,
    settings: Settings,
    passcreator: PasscreatorClient,
    sandbox: SandboxHandle,
    published: RecordingEnqueue,
) -> None:
    # Given a coupon and a loyalty card at the sandbox
    coupon = issue(db, passcreator, "cus_1", "welcome")
    card = issue(db, passcreator, "cus_2", "loyalty")
    # When the coupon is scanned twice and the card once, through HTTP
    post_scans(
        client,
        {
            "scans": [
                scan("c1", pass_id=coupon, location="Berlin"),
                scan("c2", pass_id=coupon),
                scan("l1", pass_id=card, amount=10.0),
            ]
        },
    )
    ctx = UsageContext(settings, passcreator)
    statuses = []
    for scan_id in published.calls[0]:
        with db.session() as session:
            statuses.append(str(process_scan(session, scan_id, ctx).status))
    # Then the coupon is voided once, the card shows the visit, one thank-you went out
    assert statuses == ["accepted", "rejected", "accepted"]
    stored = {p["identifier"]: p for p in sandbox.passes()}
    assert stored[coupon]["voided"] is True
    assert stored[card]["voided"] is False
    assert stored[card]["fields"]["visits"] == 1
    assert stored[card]["fields"]["scanPoints"] == 5.0
    assert [(p["passId"], p["text"]) for p in sandbox.pushes()] == [
        (coupon, "Thanks for visiting Berlin!")
    ]


def test_the_sweep_takes_only_unfinished_scans_older_than_the_stale_age(
    client: TestClient, db: Database
) -> None:
    # Given one scan just received
    post_scans(client, scan("s1", barcode="B1"))
    with db.session() as session:
        # When the sweep looks for scans received before now - 60 s, and before now + 60 s
        old = pending_scan_ids(session, utcnow() - timedelta(seconds=60))
        fresh = pending_scan_ids(session, utcnow() + timedelta(seconds=60))
    # Then only the second window takes it
    assert (old, len(fresh)) == ([], 1)
