"""The dashboard at 1280 and 390 px in headless Chromium: nothing clipped, filters that
filter, y-axes, drafts told apart from stalls, an empty state that says what to set up
(issue 18, item 11). DASHBOARD_SCREENSHOTS=$PWD/docs keeps the screenshots."""

from __future__ import annotations

import os
import re
from html import escape
from pathlib import Path

import httpx
import pytest

from tests.adoption.conftest import READ
from tests.adoption.live import serving
from tests.adoption.scenario import seed
from tests.adoption.test_dashboard import bars, run_chromium
from tests.api.conftest import BrokerPing, RecordingEnqueue
from worker.api.app import create_app
from worker.campaigns.models import Campaign, CampaignRecipient
from worker.config import Settings
from worker.db import Database

SHOTS_ENV = "DASHBOARD_SCREENSHOTS"
# Appended to a copy of the page (the page itself has no script): how wide the document is,
# and the right edge of the widest element, against the viewport, written to the frame's
# parent. Headless Chromium's window is at least 500 px wide, so the page is laid out in an
# iframe of the wanted width.
MEASURE = (
    "<script>let r=0;for(const e of document.querySelectorAll('body *')){"
    "r=Math.max(r,e.getBoundingClientRect().right)}"
    "const d=parent.document.body.dataset;d.viewport=window.innerWidth;"
    "d.scroll=document.documentElement.scrollWidth;d.right=Math.ceil(r)</script>"
)


def framed(html: str, width: int, height: int) -> str:
    """The page in an iframe `width` px wide (srcdoc: same origin as its parent)."""
    return (
        '<!DOCTYPE html><html><body style="margin:0;background:#d1d5db">'
        f'<iframe srcdoc="{escape(html)}" style="width:{width}px;height:{height}px;'
        'border:0;display:block;background:#fff"></iframe></body></html>'
    )


def draft_campaign(db: Database) -> int:
    """A draft campaign for cus_1 only: a filter on it must change the picture."""
    with db.session() as session:
        campaign = Campaign(name="Spring draft", event_type="customer.created", total=1)
        session.add(campaign)
        session.flush()
        session.add(
            CampaignRecipient(
                campaign_id=campaign.id, line=1, customer_id="cus_1", payload={}, state="pending"
            )
        )
        return campaign.id


def page(base: str, query: str = "") -> str:
    answer = httpx.get(f"{base}/dashboard?{query.lstrip('&')}", headers=READ, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


def measured(html: str, width: int, tmp_path: Path, name: str) -> dict[str, int]:
    copy = tmp_path / f"{name}.html"
    copy.write_text(framed(html.replace("</body>", MEASURE + "</body>"), width, 1200))
    dom = run_chromium(
        [f"--window-size={max(width, 500)},1200", "--dump-dom", copy.as_uri()],
        tmp_path / f"p-{name}",
    )
    found = {k: int(v) for k, v in re.findall(r'data-(viewport|scroll|right)="(\d+)"', dom)}
    assert set(found) == {"viewport", "scroll", "right"}, dom[:500]
    return found


def screenshot(html: str, width: int, height: int, tmp_path: Path, name: str) -> Path:
    keep = os.environ.get(SHOTS_ENV)
    shot = (Path(keep) if keep else tmp_path) / name
    copy = tmp_path / f"shot-{name}.html"
    copy.write_text(framed(html, width, height))
    run_chromium(
        [
            f"--screenshot={shot.resolve()}",
            f"--window-size={max(width, 500)},{height}",
            "--hide-scrollbars",
            copy.as_uri(),
        ],
        tmp_path / f"shot-{name}",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return shot


@pytest.mark.parametrize("width", [1280, 390])
def test_nothing_is_clipped_at_desktop_and_phone_width(
    settings: Settings, db: Database, tmp_path: Path, width: int
) -> None:
    # Given the seeded scenario and a draft campaign
    seed(db)
    draft_campaign(db)
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing())
    with serving(app) as base:
        html = page(base)
        # When Chromium lays the page out at this width
        size = measured(html, width, tmp_path, f"w{width}")
        name = "dashboard.png" if width == 1280 else f"dashboard-{width}.png"
        screenshot(
            html,
            width,
            1150 if width == 1280 else 1500,
            tmp_path,
            name,
        )
    # Then the page is no wider than the window and no element sticks out of it
    assert size["viewport"] == width
    assert size["scroll"] <= width, size
    assert size["right"] <= width, size


def test_filters_filter_every_chart(settings: Settings, db: Database) -> None:
    seed(db)
    draft = draft_campaign(db)
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing())
    with serving(app) as base:
        everything = page(base)
        one_campaign = page(base, f"&campaign={draft}")
        android = page(base, "&platform=android")
        later = page(base, "&since=2026-11-21")
        loyalty = page(base, "&pass_key=welcome")
        bad = httpx.get(f"{base}/dashboard?since=yesterday", headers=READ)
    # The campaign filter: only its recipient's pass, only that campaign
    assert bars(one_campaign, "funnel")["known"] == "1"
    assert bars(one_campaign, "locations") == {"Berlin Mitte": "3"}
    assert bars(one_campaign, "campaigns") == {"Spring draft": "0"}
    assert bars(everything, "funnel")["known"] == "4"
    assert set(bars(everything, "campaigns")) == {"Spring draft", "Winter welcome"}
    assert "showing: campaign" in one_campaign and "showing:" not in everything
    assert f'<option value="{draft}" selected>' in one_campaign
    assert "Winter welcome (running)</option>" in one_campaign  # the others stay choosable
    # Platform, day and pass key filters
    assert bars(android, "funnel")["downloaded"] == "1"
    assert bars(android, "platforms") == {"android": "1"}
    assert bars(later, "funnel")["issued"] == "2"
    assert bars(loyalty, "funnel") == {
        "known": "1",
        "issued": "1",
        "downloaded": "0",
        "installed": "0",
        "used": "0",
        "removed": "0",
    }
    assert bad.status_code == 422


def test_the_time_chart_has_a_y_axis_and_a_draft_is_not_a_stall(
    settings: Settings, db: Database
) -> None:
    seed(db)
    draft_campaign(db)
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing())
    with serving(app) as base:
        html = page(base)
    over_time = re.search(r'<svg id="over-time".*?</svg>', html, re.S)
    assert over_time is not None
    assert re.findall(r'data-tick="(\d+)"', over_time.group(0)) == ["0", "1", "2"]
    assert ">passes</text>" in over_time.group(0)
    statuses = dict(
        re.findall(
            r'data-label="([^"]+)" data-value="\d+" data-total="\d+" '
            r'data-status="(\w+)"',
            html,
        )
    )
    assert statuses == {"Spring draft": "draft", "Winter welcome": "running"}
    assert "0 / 1 · draft: not started" in html and "3 / 4 · running" in html


def test_an_empty_dashboard_says_what_to_set_up(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    app = create_app(settings, db, RecordingEnqueue(), BrokerPing())
    with serving(app) as base:
        html = page(base)
        size = measured(html, 390, tmp_path, "empty")
        screenshot(html, 1280, 1000, tmp_path, "dashboard-empty.png")
    assert "No passes yet." in html and "<code>POST /webhooks/pos</code>" in html
    assert "Downloads, installs and removals need provider callbacks" in html
    assert "<code>passsync adoption subscribe</code>" in html
    assert "<code>callbacks.public_url</code>" in html
    assert size["scroll"] <= 390 and size["right"] <= 390, size
