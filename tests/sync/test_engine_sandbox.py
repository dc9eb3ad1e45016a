"""The engine with the real Passcreator client against the sandbox: lost answers adopt."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from tests.sync.ledger_rows import store
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.providers.errors import TemplateNotFoundError, TransientError
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


def test_a_template_recreated_under_its_name_heals_the_cache_at_once(
    db: Database, ctx: SyncContext, _sandbox: SandboxHandle
) -> None:
    # Given the cache knows "Loyalty Card" by its old id
    old_id = ctx.templates.resolve("Loyalty Card")
    # And the template is deleted and created again under the same name (a new id)
    with httpx.Client(base_url=_sandbox.base_url, headers={"Authorization": KEY}) as http:
        assert http.delete(f"/api/pass-template/{old_id}").status_code == 200
        body = {"name": "Loyalty Card", "additionalProperties": ["firstName", "tier"]}
        created = http.post("/api/v2/pass-template", json=body)
        assert created.status_code == 200
    new_id = created.json()["data"]["identifier"]
    assert new_id != old_id
    lists_before = _sandbox.stats()["calls"].get("GET /api/pass-template", 0)
    # When an event creates a pass
    event_id = store_event(db)
    with db.session() as session:
        result = process_event(session, event_id, ctx)
    # Then the "Unknown template" refusal refreshed the cache, and the retry created the pass
    assert [p.outcome for p in result.passes] == [Outcome.CREATED]
    assert _sandbox.stats()["calls"]["GET /api/pass-template"] == lists_before + 1
    assert _sandbox.stats()["calls"]["POST /api/v3/pass"] == 2
    (stored,) = [p for p in _sandbox.passes() if not p["deleted"]]
    assert stored["templateId"] == new_id
    assert ctx.templates.resolve("Loyalty Card") == new_id


def test_an_unknown_template_still_listed_under_the_same_id_is_dead_without_a_retry(
    db: Database, ctx: SyncContext, _sandbox: SandboxHandle
) -> None:
    # Given the cache holds an id the provider refuses, and the list still names it
    ctx.templates.resolve("Loyalty Card")
    ctx.templates._ids["Loyalty Card"] = "no-such-template"
    ctx.templates.refresh = lambda name: "no-such-template"  # type: ignore[method-assign]
    event_id = store_event(db)
    # When the event is processed, the refresh finds nothing new: refused for good, no retry
    with pytest.raises(TemplateNotFoundError), db.session() as session:
        process_event(session, event_id, ctx)
    assert _sandbox.stats()["calls"]["POST /api/v3/pass"] == 1
    assert [p for p in _sandbox.passes() if not p["deleted"]] == []
