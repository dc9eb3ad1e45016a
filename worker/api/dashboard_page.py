"""The dashboard page: filters, charts, and an empty state that says what to set up.

One HTML page, no script, nothing loaded from elsewhere (works offline). The layout is one
column on a phone (390 px) and two from 760 px; charts are SVG that scale to their card.
"""

from __future__ import annotations

from datetime import date
from html import escape
from typing import Any

from fastapi import HTTPException, status

from worker.adoption.charts import hbar_chart, progress_chart, timeline_chart
from worker.adoption.metrics import Filters
from worker.config import Settings

STYLE = (
    "*{box-sizing:border-box}"
    "body{font-family:system-ui,sans-serif;margin:0;padding:16px;background:#f9fafb;"
    "color:#111827;max-width:1240px}"
    "h1{font-size:22px;margin:4px 0}"
    ".grid{display:grid;grid-template-columns:1fr;gap:16px}"
    "@media(min-width:760px){.grid{grid-template-columns:repeat(2,minmax(0,1fr))}}"
    ".card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px;min-width:0}"
    ".card svg{display:block;width:100%;height:auto}"
    "svg text{font-size:12px;fill:#111827}svg .title{font-size:14px;font-weight:600}"
    "svg .empty{fill:#6b7280}svg .axis{fill:#4b5563;font-size:11px}"
    ".kpi{color:#374151;margin:4px 0 12px}"
    "form{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-end;margin:0 0 16px}"
    "label{display:flex;flex-direction:column;font-size:12px;color:#374151;gap:2px}"
    "input,select{font:inherit;padding:4px 6px;border:1px solid #d1d5db;border-radius:6px;"
    "width:9.5em;max-width:100%}"
    "button{font:inherit;padding:5px 12px;border-radius:6px;border:1px solid #2563eb;"
    "background:#2563eb;color:#fff}"
    ".setup{background:#fffbeb;border:1px solid #fcd34d;border-radius:8px;padding:8px 16px;"
    "margin:0 0 16px}.setup code{background:#fef3c7;padding:0 3px;border-radius:3px;"
    "overflow-wrap:anywhere}"
    ".active{color:#1d4ed8;margin:0 0 12px;font-size:14px}"
)

FILTER_FIELDS = ("template", "pass_key", "campaign", "platform", "since", "until")


def page_filters(query: dict[str, str]) -> Filters:
    """The filters of the page's form (empty fields mean "all"); 422 on a bad value."""
    given = {k: query.get(k, "").strip() for k in FILTER_FIELDS}
    try:
        campaign = int(given["campaign"]) if given["campaign"] else None
        since = date.fromisoformat(given["since"]) if given["since"] else None
        until = date.fromisoformat(given["until"]) if given["until"] else None
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "campaign is a number; since and until are dates (YYYY-MM-DD)",
        ) from None
    return Filters(
        template=given["template"] or None,
        pass_key=given["pass_key"] or None,
        campaign=campaign,
        platform=given["platform"] or None,
        since=since,
        until=until,
    )


def render(report: dict[str, Any], filters: Filters, settings: Settings) -> str:
    """The page: title, filter form, what to set up (when something is missing), charts."""
    steps = {s["step"]: s["count"] for s in report["steps"]}
    wait = report["time_to_install_seconds"]["median"]
    headline = (
        f"{steps['issued']} passes issued of {steps['known']} known · median time to install: "
        + ("-" if wait is None else f"{wait / 60:.1f} min")
    )
    cards = "".join(f'<div class="card">{chart}</div>' for chart in _charts(report))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>passsync adoption</title><style>{STYLE}</style></head><body>"
        f'<h1>passsync: pass adoption</h1><p class="kpi">{escape(headline)}</p>'
        f"{_form(filters, report)}{_active(filters)}{_setup(steps, settings, filters)}"
        f'<div class="grid">{cards}</div></body></html>'
    )


def _charts(report: dict[str, Any]) -> list[str]:
    steps = [(s["step"], float(s["count"])) for s in report["steps"]]
    return [
        hbar_chart("funnel", "Adoption funnel (passes at each step)", steps),
        timeline_chart(
            "over-time",
            "Adoption over time (passes per day)",
            report["days"],
            ("issued", "installed", "used"),
        ),
        hbar_chart("platforms", "Platform split (passes downloaded)", _pairs(report["platforms"])),
        hbar_chart(
            "locations",
            "Top locations (valid scans)",
            [(r["location"], float(r["scans"])) for r in report["top_locations"]],
        ),
        progress_chart(
            "campaigns",
            "Campaigns (recipients done / total)",
            [(c["name"], c["done"], c["total"], c["status"]) for c in report["campaigns"]],
        ),
    ]


def _form(filters: Filters, report: dict[str, Any]) -> str:
    """A GET form: the cookie session carries the login, so no token is in its links."""
    campaigns = "".join(
        f'<option value="{c["id"]}"{" selected" if filters.campaign == c["id"] else ""}>'
        f"{escape(str(c['id']))}: {escape(c['name'])} ({escape(c['status'])})</option>"
        for c in report["campaign_choices"]
    )
    if filters.campaign is not None and not any(
        c["id"] == filters.campaign for c in report["campaign_choices"]
    ):
        campaigns += f'<option value="{filters.campaign}" selected>{filters.campaign}</option>'

    def field(name: str, label: str, value: object, kind: str = "text") -> str:
        shown = "" if value is None else escape(str(value))
        return (
            f'<label>{label}<input type="{kind}" name="{name}" value="{shown}" '
            f'aria-label="{label}"></label>'
        )

    return (
        '<form method="get" action="/dashboard" aria-label="filters">'
        + field("template", "template", filters.template)
        + field("pass_key", "pass key", filters.pass_key)
        + '<label>campaign<select name="campaign" aria-label="campaign">'
        + f'<option value="">all</option>{campaigns}</select></label>'
        + field("platform", "platform", filters.platform)
        + field("since", "issued since", filters.since, "date")
        + field("until", "issued until", filters.until, "date")
        + '<button type="submit">filter</button></form>'
    )


def _active(filters: Filters) -> str:
    shown = [
        f"{name.replace('_', ' ')} {value}"
        for name, value in vars(filters).items()
        if value is not None
    ]
    if not shown:
        return ""
    return f'<p class="active">showing: {escape(", ".join(shown))}</p>'


def _setup(steps: dict[str, int], settings: Settings, filters: Filters) -> str:
    """What to set up when the charts would be empty: events first, then callbacks."""
    items: list[str] = []
    filtered = any(v is not None for v in vars(filters).values())
    if steps["known"] == 0 and not filtered:
        sources = ", ".join(f"<code>POST /webhooks/{escape(n)}</code>" for n in settings.sources)
        items.append(
            "<li><b>No passes yet.</b> Send signed customer events to "
            f"{sources or '<code>POST /webhooks/&lt;source&gt;</code>'} (see README, "
            '"The webhook contract"), or create a campaign: '
            "<code>passsync campaign create FILE.csv --start</code>.</li>"
        )
    if steps["downloaded"] == 0 and not filtered:
        how = (
            "passsync is subscribed at <code>"
            + escape(settings.callbacks.public_url)
            + "</code>: saves show up once phones save passes"
            if settings.callbacks.public_url
            else "set <code>callbacks.public_url</code> (the address the provider can reach) and "
            "<code>PASSSYNC_CALLBACKS__SECRET</code>, then run "
            "<code>passsync adoption subscribe</code>"
        )
        items.append(
            "<li><b>Downloads, installs and removals need provider callbacks</b>: the wallet "
            f"apps tell the provider, the provider tells passsync. {how}.</li>"
        )
    if not items:
        return ""
    return f'<div class="setup" role="note"><ul>{"".join(items)}</ul></div>'


def _pairs(counts: dict[str, int]) -> list[tuple[str, float]]:
    return [(name, float(n)) for name, n in counts.items()]
