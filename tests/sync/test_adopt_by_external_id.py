"""Adopting a pass after "already exists" looks it up once, in the rule's template.

A platform whose external ids are unique per program (PassKit) cannot find one without the
program; before, the engine asked by external id alone and the client had to try the id as a
member id, list the programs and ask each one (2 + N calls per adoption in a fresh process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.sync.ledger_rows import store
from tests.sync.test_engine import apply, make_event, mapping
from worker.config import Settings
from worker.db import Database
from worker.providers.errors import TransientError
from worker.providers.memory import MemoryProvider
from worker.providers.passkit.client import CallRecord, PassKitClient
from worker.providers.passkit.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passkit.settings import PassKitSandboxSettings
from worker.sync.engine import Outcome, SyncContext
from worker.sync.templates import TemplateResolver


def test_the_engine_tells_the_lookup_the_template(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    # Given a create that took effect but whose answer was lost
    provider = MemoryProvider()
    ctx = SyncContext(make_settings(), provider, TemplateResolver(provider))
    provider.fail_after_next["create"] = [TransientError("connection reset")]
    event_id = store(db, make_event("e1"))
    with pytest.raises(TransientError):
        apply(db, event_id, ctx)
    # When the retry finds the external id taken
    assert apply(db, event_id, ctx) == [Outcome.ADOPTED]
    # Then the one lookup named the rule's template
    assert provider.lookups == [("passsync-loyalty-c1", "tpl-loyalty")]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(PassKitSandboxSettings(host="127.0.0.1", port=0)) as handle:
        yield handle


def test_a_fresh_process_adopts_a_passkit_member_with_one_lookup(
    db: Database, make_settings: Callable[..., Settings], sandbox: SandboxHandle
) -> None:
    sandbox.reset()
    settings = make_settings(providers={"loyalty": {"kind": "passkit"}})
    account = sandbox.account(max_attempts=1, backoff_seconds=0.0)
    # Given a member enrolled by an earlier attempt in another process (its answer lost)
    with PassKitClient(account) as earlier:
        template = next(t.template_id for t in earlier.list_templates() if t.name == "Loyalty Card")
        earlier.create_pass(template_id=template, user_provided_id="passsync-loyalty-c1", fields={})
    # When this process (no memory of that enrolment) applies the event
    calls: list[CallRecord] = []
    with PassKitClient(account, on_attempt=calls.append) as client:
        resolver = TemplateResolver(client)
        resolver.resolve("Loyalty Card")  # the template cache is warm, as in a running worker
        calls.clear()
        ctx = SyncContext(settings, client, resolver)
        outcomes = apply(db, store(db, make_event("e1")), ctx)
    # Then the member is adopted with one lookup by (program, externalId): no list of programs,
    # no guess of the external id as a member id
    assert outcomes == [Outcome.ADOPTED]
    actions = [c.action for c in calls]
    assert actions.count("enrol") == 1
    lookups = [c for c in calls if c.action not in ("enrol", "update", "set_points")]
    assert [(c.action, c.status) for c in lookups] == [("get_by_external_id", 200)]
    (member,) = [m for m in sandbox.members() if m.get("externalId") == "passsync-loyalty-c1"]
    assert mapping(db).provider_pass_id == member["id"]
