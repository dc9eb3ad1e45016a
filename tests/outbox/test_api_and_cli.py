"""/api/outbox and `passsync outbox`: list, show with the attempt log, redeliver."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.api.conftest import WRITE_TOKEN
from tests.outbox.conftest import OUT_SECRET, System, customer_event
from tests.outbox.receiver import Receiver
from worker.cli import app
from worker.outbox.models import OutboxDelivery

pytestmark = pytest.mark.usefixtures("cli_admin_token")


@pytest.fixture
def delivered(system: System, receiver: Receiver) -> System:
    """cust-1 issued and delivered (after one 503)."""
    receiver.answer(503)
    system.post_event(customer_event("evt-1"))
    system.work()
    system.deliver()
    system.clock.advance(10)
    system.deliver()
    return system


def test_the_api_lists_deliveries_and_filters_them(delivered: System) -> None:
    body = delivered.api("GET", "/api/outbox").json()
    (row,) = body["deliveries"]
    assert (row["event"], row["type"], row["customer_id"], row["destination"]) == (
        1,
        "pass.issued",
        "cust-1",
        "crm",
    )
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 2, 204)
    assert body["destinations"][0]["deliveries"] == {
        "pending": 0,
        "sending": 0,
        "delivered": 1,
        "failed": 0,
    }
    assert delivered.api("GET", "/api/outbox?status=failed").json()["deliveries"] == []
    assert delivered.api("GET", "/api/outbox?customer_id=other").json()["deliveries"] == []
    assert len(delivered.api("GET", "/api/outbox?type=pass.issued").json()["deliveries"]) == 1
    assert delivered.api("GET", "/api/outbox?type=pass.nope").status_code == 422
    assert delivered.client.get("/api/outbox").status_code == 401


def test_the_api_shows_one_event_with_its_attempt_log(delivered: System) -> None:
    body = delivered.api("GET", "/api/outbox/1").json()
    assert body["envelope"]["type"] == "pass.issued"
    (delivery,) = body["deliveries"]
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in delivery["log"]] == [
        (1, "retry", 503),
        (2, "delivered", 204),
    ]
    assert delivered.api("GET", "/api/outbox/99").status_code == 404


def test_redeliver_sends_the_same_event_again_with_its_webhook_id(
    delivered: System, receiver: Receiver
) -> None:
    # read scope may not redeliver: nothing changes
    assert delivered.api("POST", "/api/outbox/1/redeliver").status_code == 403
    assert delivered.deliver().attempts == 0
    answer = delivered.api("POST", "/api/outbox/1/redeliver", WRITE_TOKEN)
    assert answer.status_code == 202 and answer.json() == {"event": 1, "deliveries": [1]}
    assert delivered.deliver().verdicts == {"delivered": 1}
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 3 and len(set(ids)) == 1
    assert delivered.api("POST", "/api/outbox/9/redeliver", WRITE_TOKEN).status_code == 404
    unknown = delivered.api("POST", "/api/outbox/1/redeliver?destination=x", WRITE_TOKEN)
    assert unknown.status_code == 404


def test_cli_list_show_and_redeliver(
    delivered: System, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", delivered.db.url)
    monkeypatch.setenv("PASSSYNC_OUTBOUND__DESTINATIONS__CRM__URL", receiver.url)
    monkeypatch.setenv("PASSSYNC_OUTBOUND__DESTINATIONS__CRM__SECRET", OUT_SECRET)
    runner = CliRunner()
    listed = runner.invoke(app, ["outbox", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)["deliveries"]
    assert [(r["event"], r["status"]) for r in rows] == [(1, "delivered")]
    table = runner.invoke(app, ["outbox", "list"])
    assert "destination crm: enabled" in table.stdout
    shown = runner.invoke(app, ["outbox", "show", "1"])
    assert json.loads(shown.stdout)["envelope"]["customer_id"] == "cust-1"
    assert runner.invoke(app, ["outbox", "show", "7"]).exit_code == 1
    assert runner.invoke(app, ["outbox", "redeliver"]).exit_code == 2
    assert runner.invoke(app, ["outbox", "redeliver", "--destination", "nope"]).exit_code == 2
    again = runner.invoke(app, ["outbox", "redeliver", "1"])
    assert again.exit_code == 0
    assert "event 1: 1 deliveries set pending" in again.stdout
    with delivered.db.sessions() as session:
        row = session.execute(select(OutboxDelivery)).scalar_one()
        assert (row.status, row.attempts) == ("pending", 0)


def test_cli_reports_a_disabled_destination_and_re_enables_it(
    system: System, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.default_status = 410
    system.post_event(customer_event("evt-1"))
    system.work()
    system.deliver()
    monkeypatch.setenv("PASSSYNC_DATABASE_URL", system.db.url)
    monkeypatch.setenv("PASSSYNC_OUTBOUND__DESTINATIONS__CRM__URL", receiver.url)
    monkeypatch.setenv("PASSSYNC_OUTBOUND__DESTINATIONS__CRM__SECRET", OUT_SECRET)
    runner = CliRunner()
    table = runner.invoke(app, ["outbox", "list"]).stdout
    assert "destination crm: DISABLED since" in table and "answered 410 Gone" in table
    answer = runner.invoke(app, ["outbox", "redeliver", "--destination", "crm"])
    assert answer.exit_code == 0
    assert "destination crm: re-enabled, 0 deliveries set pending" in answer.stdout
    receiver.default_status = 204
    assert system.deliver().verdicts == {"delivered": 1}
