"""The engine with the real Passcreator client against the sandbox: lost answers adopt."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from tests.sync.ledger_rows import store
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.providers.errors import TransientError
from worker.providers.passcreator.client import PasscreatorClient
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import PasscreatorSettings, SandboxSettings
from worker.sync.engine import Outcome, SyncContext, process_event
from worker.sync.models import PassMapping
from worker.sync.templates import TemplateResolver

KEY = "engine-sandbox-key"


@pytest.fixture(scope="module")
def _sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(SandboxSettings(port=0, api_key=SecretStr(KEY))) as handle:
        yield handle


@pytest.fixture
def ctx(_sandbox: SandboxHandle, make_settings: Callable[..., Settings]) -> Iterator[SyncContext]:
    _sandbox.reset()
    client = PasscreatorClient(
        PasscreatorSettings(
            base_url=_sandbox.base_url, api_key=SecretStr(KEY), max_attempts=1, backoff_seconds=0
        )
    )
    yield SyncContext(make_settings(), client, TemplateResolver(client))
    client.close()


def store_event(db: Database) -> int:
    return store(
        db,
        CanonicalEvent.model_validate(
            {
                "id": "e1",
                "type": "customer.created",
                "occurred_at": "2026-04-01T10:00:00Z",
                "customer": {"id": "c9", "first_name": "Ken", "attributes": {"tier": "silver"}},
            }
        ),
    )


def test_commit_then_fail_on_create_is_adopted_on_retry(
    db: Database, ctx: SyncContext, _sandbox: SandboxHandle
) -> None:
    # Given the provider stores the create but answers 500
    _sandbox.configure(commit_then_fail_probability=1.0)
    event_id = store_event(db)
    with pytest.raises(TransientError), db.session() as session:
        process_event(session, event_id, ctx)
    _sandbox.configure(commit_then_fail_probability=0.0)
    # When the event is retried
    with db.session() as session:
        result = process_event(session, event_id, ctx)
    # Then the pass the provider already has is adopted, with no twin
    assert [p.outcome for p in result.passes] == [Outcome.ADOPTED]
    passes = [p for p in _sandbox.passes() if not p["deleted"]]
    assert len(passes) == 1 and passes[0]["userProvidedId"] == "passsync-loyalty-c9"
    assert passes[0]["fields"]["tier"] == "silver"
    assert _sandbox.stats()["creates"] == 1
    with db.sessions() as session:
        mapping = session.execute(select(PassMapping)).scalar_one()
    assert mapping.provider_pass_id == passes[0]["identifier"]
    assert mapping.download_page is not None


def test_pass_deleted_at_the_sandbox_is_recreated(
    db: Database, ctx: SyncContext, _sandbox: SandboxHandle
) -> None:
    event_id = store_event(db)
    with db.session() as session:
        process_event(session, event_id, ctx)
    old = _sandbox.passes()[0]["identifier"]
    _sandbox.delete_externally(old)
    with db.session() as session:
        row = session.get(InboundEvent, event_id)
        assert row is not None
        row.status = "pending"  # replay it, with new data so an update is due
        row.payload = row.payload | {
            "id": "e2",
            "occurred_at": "2026-04-01T11:00:00Z",
            "customer": {"id": "c9", "first_name": "Ken", "attributes": {"tier": "gold"}},
        }
    with db.session() as session:
        result = process_event(session, event_id, ctx)
    assert [p.outcome for p in result.passes] == [Outcome.RECREATED]
    live = [p for p in _sandbox.passes() if not p["deleted"]]
    assert len(live) == 1 and live[0]["identifier"] != old
    assert live[0]["fields"]["tier"] == "gold"
