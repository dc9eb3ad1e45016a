"""Provider callbacks through HTTP move passes along the funnel at GET /api/adoption."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.adoption.conftest import READ, callback, seed_mapping, steps
from worker.adoption.models import AdoptionEvent
from worker.db import Database
from worker.outbox.models import OutboxEvent


def adoption_rows(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(AdoptionEvent)) or 0


def test_installed_and_removed_callbacks_change_the_funnel(
    client: TestClient, db: Database
) -> None:
    # Given two issued loyalty cards
    seed_mapping(db, "cus_1", "loyalty", "P1")
    seed_mapping(db, "cus_2", "loyalty", "P2")
    before = steps(client)
    # When both are installed (iOS, Android) and then P2 is removed
    a = callback(client, "pushnotification_registered", {"identifier": "P1", "platform": "iOS"})
    b = callback(client, "pushnotification_registered", {"identifier": "P2", "platform": "Android"})
    installed = steps(client)
    c = callback(client, "pushnotification_unregistered", {"identifier": "P2", "at": 1})
    after = steps(client)
    # Then the counts follow each step
    assert [r.status_code for r in (a, b, c)] == [202, 202, 202]
    assert c.json() == {"recorded": True, "kind": "removed"}
    assert before == {
        "known": 2,
        "issued": 2,
        "downloaded": 0,
        "installed": 0,
        "used": 0,
        "removed": 0,
    }
    assert installed == {
        "known": 2,
        "issued": 2,
        "downloaded": 2,
        "installed": 2,
        "used": 0,
        "removed": 0,
    }
    assert after == {
        "known": 2,
        "issued": 2,
        "downloaded": 2,
        "installed": 1,
        "used": 0,
        "removed": 1,
    }
    body = client.get("/api/adoption", headers=READ).json()
    assert body["platforms"] == {"android": 1, "ios": 1}
    assert [(s["step"], s["rate"]) for s in body["steps"]][3:] == [
        ("installed", 0.5),
        ("used", 0.0),
        ("removed", 0.5),
    ]
    # And the CRM hears of each install and removal of its passes
    with db.session() as session:
        types = session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)).all()
    assert types == ["pass.installed", "pass.installed", "pass.removed"]


def test_a_repeated_callback_is_recorded_once(client: TestClient, db: Database) -> None:
    # Given an issued pass
    seed_mapping(db, "cus_1", "loyalty", "P1")
    # When the provider delivers the same install twice
    first = callback(client, "pushnotification_registered", {"identifier": "P1"})
    again = callback(client, "pushnotification_registered", {"identifier": "P1"})
    # Then one ledger row, one device
    assert (first.json(), again.json()) == (
        {"recorded": True, "kind": "installed"},
        {"recorded": False, "kind": "installed"},
    )
    assert adoption_rows(db) == 1
    assert steps(client)["installed"] == 1


def test_a_callback_without_the_token_is_refused_and_not_stored(
    client: TestClient, db: Database
) -> None:
    # Given an issued pass
    seed_mapping(db, "cus_1", "loyalty", "P1")
    # When callbacks arrive with a wrong token and with none
    wrong = callback(client, "pushnotification_registered", {"identifier": "P1"}, token="nope")
    missing = callback(client, "pushnotification_registered", {"identifier": "P1"}, token="")
    # Then 401 and nothing is recorded
    assert (wrong.status_code, missing.status_code) == (401, 401)
    assert adoption_rows(db) == 0
    assert steps(client)["downloaded"] == 0


def test_the_funnel_filters_by_pass_key_platform_and_day(client: TestClient, db: Database) -> None:
    # Given a loyalty card installed on iOS and a coupon issued a day later, not installed
    seed_mapping(db, "cus_1", "loyalty", "P1")
    seed_mapping(
        db,
        "cus_2",
        "welcome",
        "P2",
        template="tpl-welcome",
        issued=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
    )
    callback(client, "pushnotification_registered", {"identifier": "P1", "platform": "iphone"})
    # When the funnel is asked for with filters
    loyalty = steps(client, pass_key="loyalty")
    android = steps(client, platform="android")
    second_day = steps(client, since="2026-11-21", until="2026-11-21")
    # Then each view counts only its passes
    assert (loyalty["issued"], loyalty["installed"]) == (1, 1)
    assert (android["issued"], android["installed"]) == (0, 0)
    assert (second_day["issued"], second_day["installed"]) == (1, 0)


def test_the_adoption_api_needs_a_read_token(client: TestClient) -> None:
    # When asked without a token
    response = client.get("/api/adoption")
    # Then 401
    assert response.status_code == 401
