"""`passsync events list|show|replay` against a real ledger (publishing is recorded)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import select, update
from typer.testing import CliRunner

from tests.sync.ledger_rows import store
from tests.sync.test_claims_and_coalescing import make_event
from worker.cli import app
from worker.commands import events as events_cli
from worker.config import Settings
from worker.db import Database
from worker.inbound.models import InboundEvent

pytestmark = pytest.mark.usefixtures("cli_admin_token")


@pytest.fixture
def published(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    calls: list[list[int]] = []

    def publish(_settings: Settings, ids: list[int]) -> str | None:
        calls.append(list(ids))
        return None

    monkeypatch.setattr(events_cli, "publish", publish)
    return calls


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["events", *args])


def ledger(db: Database) -> list[dict[str, Any]]:
    """Three events: e0 handled, e1 dead (rejected), e2 pending."""
    ids = [store(db, make_event(f"e{n}", minutes=n)) for n in range(3)]
    with db.session() as session:
        session.execute(
            update(InboundEvent).where(InboundEvent.id == ids[0]).values(status="handled")
        )
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == ids[1])
            .values(status="dead", attempts=1, last_error="rejected: templateId is invalid")
        )
    return [{"id": pk} for pk in ids]


def statuses(db: Database) -> list[str]:
    with db.sessions() as session:
        return list(session.scalars(select(InboundEvent.status).order_by(InboundEvent.id)))


def test_list_dead_as_json(db: Database, published: list[list[int]]) -> None:
    rows = ledger(db)
    result = cli("list", "--status", "dead", "--json")
    assert result.exit_code == 0, result.output
    [dead] = json.loads(result.stdout)["events"]
    assert (dead["id"], dead["event_id"], dead["status"], dead["last_error"]) == (
        rows[1]["id"],
        "e1",
        "dead",
        "rejected: templateId is invalid",
    )


def test_list_since_and_as_a_table(db: Database, published: list[list[int]]) -> None:
    ledger(db)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert json.loads(cli("list", "--since", later, "--json").stdout) == {"events": []}
    table = cli("list")
    assert table.exit_code == 0 and "events (3, newest first)" in table.stdout
    assert cli("list", "--status", "lost").exit_code == 2


def test_show_prints_the_event_with_its_payload(db: Database, published: list[list[int]]) -> None:
    rows = ledger(db)
    result = cli("show", str(rows[2]["id"]))
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert (shown["event_id"], shown["status"], shown["payload"]["id"]) == ("e2", "pending", "e2")
    missing = cli("show", "99999")
    assert missing.exit_code == 1 and "no event with id 99999" in missing.output


def test_replay_one_event_twice_enqueues_it_once(db: Database, published: list[list[int]]) -> None:
    rows = ledger(db)
    first = cli("replay", str(rows[1]["id"]))
    second = cli("replay", str(rows[1]["id"]))
    assert first.exit_code == 0 and f"replayed 1 event(s): {rows[1]['id']}" in first.stdout
    assert second.exit_code == 0 and "nothing to replay" in second.stdout
    assert published == [[rows[1]["id"]]]
    assert statuses(db) == ["handled", "pending", "pending"]


def test_replay_dead_replays_the_dead_letter(db: Database, published: list[list[int]]) -> None:
    rows = ledger(db)
    assert cli("replay", "--dead").exit_code == 0
    assert cli("replay", "--dead").exit_code == 0
    assert published == [[rows[1]["id"]]]
    assert statuses(db) == ["handled", "pending", "pending"]


def test_replay_since_takes_recent_dead_and_failed(
    db: Database, published: list[list[int]]
) -> None:
    rows = ledger(db)
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert cli("replay", "--since", later).exit_code == 0
    assert published == []
    assert cli("replay", "--since", earlier).exit_code == 0
    assert published == [[rows[1]["id"]]]


@pytest.mark.parametrize("args", [[], ["1", "--dead"], ["--since", "yesterday"]])
def test_replay_needs_one_clear_selection(
    db: Database, published: list[list[int]], args: list[str]
) -> None:
    ledger(db)
    assert cli("replay", *args).exit_code == 2
    assert published == []
    assert statuses(db) == ["handled", "dead", "pending"]


def test_replay_of_an_unknown_event_fails(db: Database, published: list[list[int]]) -> None:
    ledger(db)
    result = cli("replay", "99999")
    assert result.exit_code == 1 and "no event with id 99999" in result.output
    assert published == []


def test_replay_with_no_broker_leaves_them_pending_for_the_sweeper(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", db.url)
    rows = ledger(db)
    result = cli("replay", "--dead")  # broker_url is 'embedded': nothing to publish to
    assert result.exit_code == 0
    assert "the sweeper sends them shortly" in result.output
    assert statuses(db) == ["handled", "pending", "pending"]
    assert rows[1]["id"] > 0
