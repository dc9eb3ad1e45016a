"""Each account's platform calls back with its own methods: PassKit POST, PUT and DELETE.

PassKit sends a created record by POST, installed and uninstalled by PUT, and "POST, PUT or
DELETE ... depending on the type" (passkit-airship.md §1.10): the bodies below are the vendor's
`SinkSubscriptionPayload {event, pass}` shapes, with numeric enums and `metaData` as in
PassKit's sample file, and with names and `metadata` as in the proto.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.adoption.conftest import CALLBACK_TOKEN
from tests.api.conftest import BrokerPing, RecordingEnqueue
from worker.adoption.models import AdoptionEvent, PassAdoption
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database
from worker.outbox.models import OutboxEvent
from worker.providers import registry
from worker.providers.port import CallbackFact, CallbackRequest
from worker.sync.models import PassMapping, PassStatus

MEMBER = "20tDNDWjawWwnqygGvFhL1"
PROGRAM = "3yyTsbqwmtXaiKZ5qWhqTP"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        callbacks={"secret": CALLBACK_TOKEN},
        providers={"coupons": {"kind": "passcreator"}, "loyalty": {"kind": "passkit"}},
        sync={"default_account": "coupons"},
    )


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    with db.session() as session:
        session.add(
            PassMapping(
                provider="loyalty",
                kind="passkit",
                customer_id="cus_1",
                pass_key="loyalty",
                user_provided_id="passsync-loyalty-cus_1",
                provider_pass_id=MEMBER,
                template_id=f"{PROGRAM}/base",
                status=PassStatus.ACTIVE,
            )
        )
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing())
    with TestClient(app) as test_client:
        yield test_client


def vendor_pass(**meta: Any) -> dict[str, Any]:
    """A `Pass` as PassKit's sample file shows it: numeric protocol, dotted recordData."""
    return {
        "id": MEMBER,
        "classId": PROGRAM,
        "protocol": 100,
        "externalId": "passsync-loyalty-cus_1",
        "personDetails": {"displayName": "Anna K", "emailAddress": "anna@example.com"},
        "metaData": {"status": 1, "lifecycleEvents": [1, 2], **meta},
        "recordData": {
            "members.member.id": MEMBER,
            "members.member.externalId": "passsync-loyalty-cus_1",
            "members.member.points": "10",
            "members.tier.id": "base",
            "person.emailAddress": "anna@example.com",
        },
    }


def send(
    client: TestClient,
    method: str,
    body: dict[str, Any] | None,
    *,
    account: str = "loyalty",
    path: str = "",
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    return client.request(
        method,
        f"/providers/{account}/callbacks{path}",
        params={"token": CALLBACK_TOKEN} if params is None else params,
        content=b"" if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )


def ledger(db: Database) -> list[tuple[str, str, str | None]]:
    with db.session() as session:
        rows = session.execute(
            select(
                AdoptionEvent.provider, AdoptionEvent.kind, AdoptionEvent.provider_pass_id
            ).order_by(AdoptionEvent.id)
        ).all()
    return [(a, str(k), p) for a, k, p in rows]


def outbox_types(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)))


def test_passkit_calls_back_with_post_put_and_delete_and_each_is_recorded(
    client: TestClient, db: Database
) -> None:
    # When PassKit reports the record created (POST, numeric enum), installed on an iPhone
    # (PUT, numeric), uninstalled (PUT, by name, `metadata` with an RFC 3339 time) and the
    # record deleted (DELETE, untracked)
    created = send(client, "POST", {"event": 1, "pass": vendor_pass()})
    installed = send(
        client,
        "PUT",
        {"event": 2, "pass": vendor_pass(platform="IOS", lastInstalledAt={"seconds": 1780000000})},
    )
    removed_pass = vendor_pass()
    removed_pass.pop("metaData")
    removed_pass["metadata"] = {
        "status": "PASS_UNINSTALLED",
        "lastUninstalledAt": "2026-06-01T10:00:00Z",
    }
    removed = send(client, "PUT", {"event": "PASS_EVENT_UNINSTALLED", "pass": removed_pass})
    deleted = send(client, "DELETE", {"event": 32, "pass": vendor_pass()})
    # Then each is accepted, the tracked ones are in the ledger under the account
    assert [r.status_code for r in (created, installed, removed, deleted)] == [202] * 4
    assert installed.json() == {"recorded": True, "kind": "installed"}
    assert removed.json() == {"recorded": True, "kind": "removed"}
    assert deleted.json() == {"recorded": False, "kind": None}
    assert ledger(db) == [
        ("loyalty", "created", MEMBER),
        ("loyalty", "installed", MEMBER),
        ("loyalty", "removed", MEMBER),
    ]
    with db.session() as session:
        state = session.get(PassAdoption, MEMBER)
        assert state is not None
        assert (state.installs, state.removals, state.active_devices) == (1, 1, 0)
        assert state.platform == "ios"
        assert state.first_installed_at == datetime.fromtimestamp(1780000000, tz=UTC).replace(
            tzinfo=state.first_installed_at.tzinfo
        )
    # and the CRM hears of the install and the removal of its pass
    assert outbox_types(db) == ["pass.installed", "pass.removed"]


def test_a_repeated_put_is_recorded_once(client: TestClient, db: Database) -> None:
    body = {"event": 2, "pass": vendor_pass(platform="ANDROID")}
    first, again = send(client, "PUT", body), send(client, "PUT", body)
    assert (first.json()["recorded"], again.json()["recorded"]) == (True, False)
    assert ledger(db) == [("loyalty", "installed", MEMBER)]


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_an_account_whose_platform_posts_refuses_other_methods(
    client: TestClient, db: Database, method: str
) -> None:
    # Passcreator calls back by POST only: a PUT or DELETE there is 405 with the Allow header
    answer = send(
        client,
        method,
        {"identifier": "P1"},
        account="coupons",
        params={"token": CALLBACK_TOKEN, "event": "pushnotification_registered"},
    )
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert "POST" in answer.json()["detail"]
    assert ledger(db) == []


def test_a_method_no_platform_calls_back_with_is_refused(client: TestClient, db: Database) -> None:
    answer = send(client, "PATCH", {"event": 2, "pass": vendor_pass()})
    assert answer.status_code == 405
    assert "PATCH" not in answer.headers["allow"]
    assert ledger(db) == []


def test_a_put_without_the_token_is_refused_and_not_stored(
    client: TestClient, db: Database
) -> None:
    answer = send(client, "PUT", {"event": 2, "pass": vendor_pass()}, params={"token": "wrong"})
    missing = send(client, "DELETE", {"event": 32, "pass": vendor_pass()}, params={})
    assert (answer.status_code, missing.status_code) == (401, 401)
    assert ledger(db) == []


def test_the_token_may_come_as_a_bearer_header(client: TestClient, db: Database) -> None:
    good = {"authorization": f"Bearer {CALLBACK_TOKEN}"}
    answer = send(client, "PUT", {"event": 2, "pass": vendor_pass()}, params={}, headers=good)
    bad = send(
        client,
        "PUT",
        {"event": 8, "pass": vendor_pass()},
        params={},
        headers={"authorization": "Bearer nope"},
    )
    assert (answer.status_code, bad.status_code) == (202, 401)
    assert ledger(db) == [("loyalty", "installed", MEMBER)]


def test_a_path_after_callbacks_is_unknown_to_a_platform_that_appends_none(
    client: TestClient, db: Database
) -> None:
    answer = send(client, "PUT", {"event": 2, "pass": vendor_pass()}, path="/v1/pass/install")
    assert answer.status_code == 404
    assert ledger(db) == []


def test_a_platform_that_appends_paths_gets_the_path_and_the_method(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a platform that calls back by POST to <callbacks URL>[/v1]/pass/install|uninstall
    seen: list[CallbackRequest] = []

    def parse(request: CallbackRequest) -> list[CallbackFact]:
        seen.append(request)
        kind = "installed" if request.path.endswith("/install") else "removed"
        return [CallbackFact(f"cb-{len(seen)}", kind, MEMBER, "ios", None, {})]

    real = registry.account

    def account(settings: Settings, name: str | None = None) -> registry.Account:
        found = real(settings, name)
        kind = replace(
            found.kind,
            parse_callback=parse,
            callback_methods=frozenset({"POST"}),
            callback_path=r"(/v1)?/pass/(install|uninstall)",
        )
        return registry.Account(found.name, kind, found.settings)

    monkeypatch.setattr(registry, "account", account)
    # When it calls back to both path forms, and to one it does not use
    ok = send(client, "POST", {"passId": 1}, path="/v1/pass/install")
    old = send(client, "POST", {"passId": 1}, path="/pass/uninstall")
    other = send(client, "POST", {"passId": 1}, path="/v1/pass/1/personalize")
    # Then the parser got each known path with its method; the other path is 404
    assert [r.status_code for r in (ok, old, other)] == [202, 202, 404]
    assert [(r.method, r.path) for r in seen] == [
        ("POST", "/v1/pass/install"),
        ("POST", "/pass/uninstall"),
    ]
    assert "authorization" not in seen[0].headers
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AdoptionEvent)) == 2
