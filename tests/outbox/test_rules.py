"""Pure pieces: which events a pass change emits, verdicts, the retry schedule, settings."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.config import ConfigError, OutboundSettings, load_settings, read_config_file
from worker.outbox.store import SendResult, classify, next_wait
from worker.outbox.transport import check_destinations, retry_after
from worker.sync.outbound import pass_event_types

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    ("before", "steps", "after", "expected"),
    [
        (None, [("upsert", "created", "p1")], "p1", [("pass.issued", "p1")]),
        # adopted after a lost answer: the CRM never heard of p1
        (None, [("upsert", "adopted", "p1")], "p1", [("pass.issued", "p1")]),
        # deleted at the provider and made again: a new pass, a new link
        ("p1", [("upsert", "recreated", "p2")], "p2", [("pass.issued", "p2")]),
        ("p1", [("upsert", "adopted", "p1")], "p1", [("pass.updated", "p1")]),
        ("p1", [("upsert", "updated", "p1")], "p1", [("pass.updated", "p1")]),
        ("p1", [("upsert", "unchanged", "p1")], "p1", []),
        ("p1", [("upsert", "stale", "p1")], "p1", []),
        ("p1", [("void", "voided", "p1")], "p1", [("pass.voided", "p1")]),
        ("p1", [("unvoid", "unvoided", "p1")], "p1", [("pass.updated", "p1")]),
        ("p1", [("delete", "deleted", "p1")], None, [("pass.deleted", "p1")]),
        ("p1", [("void", "absent", "p1")], None, [("pass.deleted", "p1")]),
        (None, [("void", "absent", None)], None, []),
        (None, [("delete", "absent", None)], None, []),
        ("p1", [("push", "pushed", "p1")], "p1", []),
        ("p1", [("push", "failed", "p1")], "p1", []),
        (
            None,
            [("upsert", "created", "p1"), ("void", "voided", "p1")],
            "p1",
            [("pass.issued", "p1"), ("pass.voided", "p1")],
        ),
    ],
)
def test_pass_changes_map_to_outbound_types(
    before: str | None,
    steps: list[tuple[str, str, str | None]],
    after: str | None,
    expected: list[tuple[str, str]],
) -> None:
    assert pass_event_types(before, steps, after) == expected


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (299, "delivered"),
        (410, "disabled"),
        (400, "failed"),
        (401, "failed"),
        (404, "failed"),
        (422, "failed"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (302, "retry"),
        (None, "retry"),
    ],
)
def test_statuses_are_classified(status: int | None, verdict: str) -> None:
    assert classify(SendResult(NOW, 1, status_code=status)) == verdict


def test_waits_follow_the_schedule_within_the_jitter_and_then_stop() -> None:
    settings = OutboundSettings(retry_schedule_seconds=[10, 100], jitter=0.2)
    rng = random.Random(1)
    failed = SendResult(NOW, 1, status_code=500)
    for _ in range(200):
        first = next_wait(1, failed, settings, rng)
        second = next_wait(2, failed, settings, rng)
        assert first is not None and 8 <= first <= 12
        assert second is not None and 80 <= second <= 120
    assert next_wait(3, failed, settings, rng) is None


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    settings = OutboundSettings(
        retry_schedule_seconds=[10], jitter=0.0, max_retry_after_seconds=3600
    )
    rng = random.Random(1)
    assert next_wait(1, SendResult(NOW, 1, 429, retry_after=600), settings, rng) == 600
    assert next_wait(1, SendResult(NOW, 1, 429, retry_after=5), settings, rng) == 10
    assert next_wait(1, SendResult(NOW, 1, 503, retry_after=10**6), settings, rng) == 3600


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("Mon, 05 Jan 2026 09:02:00 GMT", 120.0),
        ("Mon, 05 Jan 2026 08:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_header_forms(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, NOW) == seconds


def test_a_destination_is_checked_at_start_up() -> None:
    def build(**destination: object) -> None:
        load_settings(
            outbound={"destinations": {"crm": {"secret": SECRET} | destination}},
        )

    build(url="https://crm.example.com/hooks")
    build(url="http://127.0.0.1:9000/hooks")  # loopback may be plain http
    build(url="http://crm.internal/hooks", allow_http=True)
    refused = {
        "ftp://crm.example.com/x": "absolute http(s) URL",
        "/relative": "absolute http(s) URL",
        "http://crm.example.com/hooks": "must use https",
        "https://user:pw@crm.example.com/": "credentials",
    }
    for url, reason in refused.items():
        with pytest.raises(ConfigError, match=re.escape(reason)) as caught:
            build(url=url)
        assert "PASSSYNC_OUTBOUND__DESTINATIONS__CRM" in str(caught.value)
    with pytest.raises(ConfigError, match="unknown event types"):
        build(url="https://crm.example.com/", event_types=["pass.issued", "pass.exploded"])


def test_a_destination_needs_its_secret_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(outbound={"destinations": {"crm": {"url": "https://crm.example.com/"}}})
    assert "PASSSYNC_OUTBOUND__DESTINATIONS__CRM__SECRET" in str(caught.value)
    config = tmp_path / "config.yaml"
    config.write_text(
        "outbound:\n  destinations:\n    crm:\n      url: https://x.example\n      secret: s\n"
    )
    with pytest.raises(ConfigError, match="PASSSYNC_OUTBOUND__DESTINATIONS__CRM__SECRET"):
        read_config_file(config)


def test_a_malformed_secret_stops_the_worker_naming_the_variable() -> None:
    settings = OutboundSettings.model_validate(
        {"destinations": {"crm": {"url": "https://crm.example.com/", "secret": "whsec_%%%"}}}
    )
    with pytest.raises(ConfigError, match="PASSSYNC_OUTBOUND__DESTINATIONS__CRM__SECRET"):
        check_destinations(settings, resolve=False)


def test_an_unresolvable_host_is_only_a_warning() -> None:
    settings = OutboundSettings.model_validate(
        {"destinations": {"crm": {"url": "https://nowhere.invalid/", "secret": SECRET}}}
    )
    assert check_destinations(settings) == [
        "outbound destination crm: host 'nowhere.invalid' does not resolve"
    ]
