"""H1's per-route exception: campaign recipients stream in past the app-wide body limit."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import BrokerPing, RecordingEnqueue
from tests.hardening.conftest import WRITE, stored
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database

NDJSON = {**WRITE, "content-type": "application/x-ndjson"}


def draft(client: TestClient) -> int:
    created = client.post(
        "/api/campaigns",
        json={"name": "c", "template": "Loyalty Card", "recipients": [{"customer_id": "c0"}]},
        headers=WRITE,
    )
    assert created.status_code == 201, created.text
    campaign_id: int = created.json()["campaign"]["id"]
    return campaign_id


def lines(count: int, pad: int = 0) -> bytes:
    return b"".join(
        json.dumps({"customer_id": f"c{n}", "attributes": {"pad": "x" * pad}}).encode() + b"\n"
        for n in range(1, count + 1)
    )


def test_recipients_stream_in_past_the_app_wide_limit(client: TestClient, db: Database) -> None:
    campaign_id = draft(client)
    body = lines(3000, pad=500)  # about 1.6 MB: over api.max_body_bytes (1 MB)
    assert len(body) > 1_048_576

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    answer = client.post(
        f"/api/campaigns/{campaign_id}/recipients", content=chunks(), headers=NDJSON
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["imported"], answer.json()["errors"]) == (3000, 0)
    assert stored(db)["campaign_recipients"] == 3001


def test_bad_lines_are_row_errors(client: TestClient) -> None:
    campaign_id = draft(client)
    body = b'{"customer_id": "a"}\n[1]\nNaN\n{"customer_id": "b", "data": ' + b"[" * 100
    body += b"]" * 100 + b'}\n{"customer_id": "c\\u0000"}\n\n{"customer_id": "d"}'
    answer = client.post(f"/api/campaigns/{campaign_id}/recipients", content=body, headers=NDJSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["imported"] == 2
    assert [e["line"] for e in answer.json()["import_errors"]] == [2, 3, 4, 5]


@pytest.fixture
def small_import(
    make_settings: Callable[..., Settings], settings: Settings, db: Database
) -> Iterator[TestClient]:
    limited = settings.model_copy(
        update={"campaigns": settings.campaigns.model_copy(update={"max_import_bytes": 200_000})}
    )
    with TestClient(create_app(limited, db, RecordingEnqueue(), BrokerPing())) as client:
        yield client


def test_past_the_import_limit_nothing_is_stored(small_import: TestClient, db: Database) -> None:
    campaign_id = draft(small_import)
    body = lines(2000, pad=100)  # over 200 kB, sent without Content-Length
    answer = small_import.post(
        f"/api/campaigns/{campaign_id}/recipients", content=iter([body]), headers=NDJSON
    )
    assert answer.status_code == 413
    assert stored(db)["campaign_recipients"] == 1  # the draft's own, nothing of the import


def test_only_a_draft_takes_recipients(client: TestClient) -> None:
    campaign_id = draft(client)
    assert client.post(f"/api/campaigns/{campaign_id}/start", headers=WRITE).status_code == 200
    answer = client.post(
        f"/api/campaigns/{campaign_id}/recipients", content=lines(2), headers=NDJSON
    )
    assert answer.status_code == 409
    missing = client.post("/api/campaigns/999999/recipients", content=lines(2), headers=NDJSON)
    assert missing.status_code == 404
