"""The dashboard renders the seeded scenario as SVG charts, checked in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.adoption.conftest import READ, READ_TOKEN
from tests.adoption.live import serving
from tests.adoption.scenario import EXPECTED, seed
from tests.api.conftest import BrokerPing, RecordingEnqueue
from tests.conftest import services_required
from worker.api import login
from worker.api.app import create_app
from worker.config import Settings
from worker.db import Database

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Set to an absolute path (e.g. $PWD/docs/dashboard.png) to keep the screenshot.
SCREENSHOT_ENV = "DASHBOARD_SCREENSHOT"


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if services_required():
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    return found


def run_chromium(args: list[str], profile: Path) -> str:
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def bars(dom: str, chart: str) -> dict[str, str]:
    """data-label -> data-value of the bars inside one chart's <svg>."""
    svg = re.search(rf'<svg id="{chart}".*?</svg>', dom, re.S)
    assert svg is not None, f"no chart {chart}"
    return dict(re.findall(r'data-label="([^"]*)" data-value="([^"]*)"', svg.group(0)))


def login_link() -> str:
    """A one-time login link for the read token (as `passsync dashboard` prints it)."""
    code = login.make_code("link", "viewer", login.signing_key(READ_TOKEN), ttl=600)
    return f"{login.LOGIN_PATH}?code={code}"


@pytest.fixture
def seeded(db: Database) -> Iterator[Database]:
    seed(db)
    yield db


def test_the_dashboard_needs_a_read_token(settings: Settings, seeded: Database) -> None:
    app = create_app(settings, seeded, RecordingEnqueue(), BrokerPing())
    with TestClient(app) as client:
        # When asked without a token, with a wrong one, and with the read token
        missing = client.get("/dashboard")
        wrong = client.get("/dashboard", headers={"Authorization": "Bearer nope"})
        good = client.get("/dashboard", headers=READ)
        # and through a login link, which opens a cookie session
        signed_in = client.get(login_link())
        again = client.get("/dashboard")
    # Then only the read token gets the page
    assert (missing.status_code, wrong.status_code, good.status_code) == (401, 401, 200)
    assert signed_in.status_code == 200 and again.status_code == 200
    # And it works offline: no script, nothing loaded from elsewhere
    assert "<script" not in good.text and "src=" not in good.text and "href=" not in good.text


def test_the_dashboard_shows_the_seeded_scenario_in_chromium(
    settings: Settings, seeded: Database, tmp_path: Path
) -> None:
    # Given the seeded scenario served on a real port
    app = create_app(settings, seeded, RecordingEnqueue(), BrokerPing())
    with serving(app) as base:
        # When headless Chromium signs in with a login link (one each: a link works once),
        # renders the page and takes a screenshot
        dom = run_chromium(["--dump-dom", f"{base}{login_link()}"], tmp_path / "profile-dom")
        shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "dashboard.png")
        run_chromium(
            [
                f"--screenshot={shot.resolve()}",
                "--window-size=1240,640",
                "--hide-scrollbars",
                f"{base}{login_link()}",
            ],
            tmp_path / "profile-shot",
        )
    # Then every chart shows the scenario's numbers
    assert bars(dom, "funnel") == {step: str(n) for step, n in EXPECTED.items()}
    assert bars(dom, "platforms") == {"android": "1", "ios": "2"}
    assert bars(dom, "locations") == {"Berlin Mitte": "3", "Hamburg": "1"}
    assert bars(dom, "campaigns") == {"Winter welcome": "3"}
    days = re.findall(r'data-day="([^"]+)" data-series="(\w+)" data-value="(\d+)"', dom)
    assert ("2026-11-20", "issued", "2") in days and ("2026-11-21", "used", "2") in days
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000


def test_the_api_returns_the_same_funnel(settings: Settings, seeded: Database) -> None:
    app = create_app(settings, seeded, RecordingEnqueue(), BrokerPing())
    with TestClient(app) as client:
        body = client.get("/api/adoption", headers=READ).json()
    assert {s["step"]: s["count"] for s in body["steps"]} == EXPECTED
    assert body["time_to_install_seconds"] == {"median": 1800.0, "mean": 1800.0}
