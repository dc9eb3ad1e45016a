"""Server-side SVG charts for the dashboard: no script, no CDN, readable as text."""

from __future__ import annotations

from html import escape
from typing import Any

# Drawn for a phone-sized card; the SVG scales up to wider cards on a desktop.
WIDTH = 440
ROW = 30
LABEL_W = 120
COLORS = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2")


def hbar_chart(chart_id: str, title: str, rows: list[tuple[str, float]], unit: str = "") -> str:
    """Horizontal bars, one per (label, value), each labelled with its value."""
    height = 40 + ROW * max(1, len(rows))
    top = max((v for _, v in rows), default=0) or 1
    span = WIDTH - LABEL_W - 70
    parts = [_open(chart_id, title, height)]
    if not rows:
        parts.append('<text x="10" y="50" class="empty">no data yet</text>')
    for i, (label, value) in enumerate(rows):
        y = 34 + i * ROW
        w = max(1.0, span * value / top) if value else 0.0
        shown = f"{value:g}{unit}"
        parts.append(
            f'<text x="{LABEL_W - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL_W}" y="{y}" width="{w:.1f}" height="20" fill="{COLORS[i % 6]}" '
            f'data-label="{escape(label)}" data-value="{value:g}"/>'
            f'<text x="{LABEL_W + w + 6:.1f}" y="{y + 15}" class="value">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# How a campaign's bar looks by status: a draft or a scheduled one has not begun (grey,
# no fill expected), a paused one is held on purpose; only a running one should move.
STATUS_COLORS = {
    "draft": "#9ca3af",
    "scheduled": "#9ca3af",
    "running": "#16a34a",
    "paused": "#f59e0b",
    "completed": "#2563eb",
    "cancelled": "#6b7280",
    "ended": "#6b7280",
}


def progress_chart(chart_id: str, title: str, rows: list[tuple[str, int, int, str]]) -> str:
    """One bar per (label, done, total, status): the done share filled, coloured by status,
    with "done / total · status" beside it (a draft reads "draft: not started")."""
    height = 40 + ROW * max(1, len(rows))
    label_w = 110
    span = WIDTH - label_w - 165
    parts = [_open(chart_id, title, height)]
    if not rows:
        parts.append(
            '<text x="10" y="50" class="empty">no campaigns: '
            "passsync campaign create FILE.csv</text>"
        )
    for i, (label, done, total, status) in enumerate(rows):
        y = 34 + i * ROW
        w = span * done / total if total else 0.0
        state = {"draft": "draft: not started", "scheduled": "scheduled: not started"}.get(
            status, status
        )
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(_short(label))}</text>'
            f'<rect x="{label_w}" y="{y}" width="{span}" height="20" fill="#e5e7eb"/>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="20" '
            f'fill="{STATUS_COLORS.get(status, "#16a34a")}" data-label="{escape(label)}" '
            f'data-value="{done}" data-total="{total}" data-status="{escape(status)}"/>'
            f'<text x="{label_w + span + 6}" y="{y + 15}" class="value">'
            f"{done} / {total} · {escape(state)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _short(label: str, room: int = 15) -> str:
    return label if len(label) <= room else label[: room - 1] + "…"


def timeline_chart(
    chart_id: str, title: str, days: list[dict[str, Any]], series: tuple[str, ...]
) -> str:
    """Grouped columns per day, one colour per series, with a legend and a y-axis."""
    height = 240
    base = height - 40
    top = max((d[s] for d in days for s in series), default=0) or 1
    slot = (WIDTH - 60) / max(1, len(days))
    bar = max(2.0, min(18.0, slot / (len(series) + 1)))
    parts = [_open(chart_id, title, height), *_y_axis(top, base, base - 60)]  # grid under bars
    for j, name in enumerate(series):
        parts.append(
            f'<rect x="{60 + j * 90}" y="30" width="10" height="10" fill="{COLORS[j]}"/>'
            f'<text x="{74 + j * 90}" y="39" class="legend">{escape(name)}</text>'
        )
    if not days:
        parts.append('<text x="60" y="100" class="empty">no data yet</text>')
    for i, day in enumerate(days):
        x0 = 50 + i * slot
        for j, name in enumerate(series):
            h = (base - 60) * day[name] / top
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{base - h:.1f}" width="{bar - 1:.1f}" '
                f'height="{h:.1f}" fill="{COLORS[j]}" data-day="{escape(day["day"])}" '
                f'data-series="{escape(name)}" data-value="{day[name]}"/>'
            )
        parts.append(
            f'<text x="{x0:.1f}" y="{base + 16}" class="axis">{escape(day["day"][5:])}</text>'
        )
    parts.append(f'<line x1="45" y1="{base}" x2="{WIDTH - 10}" y2="{base}" stroke="#9ca3af"/>')
    parts.append("</svg>")
    return "".join(parts)


def _y_axis(top: int, base: float, span: float) -> list[str]:
    """A y-axis with whole-number ticks (0, half, top), their gridlines and a unit label."""
    ticks = sorted({0, top // 2, top}) if top > 1 else [0, 1]
    parts = [f'<line x1="45" y1="{base - span}" x2="45" y2="{base}" stroke="#9ca3af"/>']
    for tick in ticks:
        y = base - span * tick / max(top, 1)
        parts.append(
            f'<line x1="42" y1="{y:.1f}" x2="{WIDTH - 10}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="38" y="{y + 4:.1f}" text-anchor="end" class="axis" '
            f'data-tick="{tick}">{tick}</text>'
        )
    parts.append(
        f'<text x="12" y="{base - span / 2:.1f}" class="axis" '
        f'transform="rotate(-90 12 {base - span / 2:.1f})" text-anchor="middle">passes</text>'
    )
    return parts


def _open(chart_id: str, title: str, height: int) -> str:
    return (
        f'<svg id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        'preserveAspectRatio="xMinYMin meet" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text x="10" y="20" class="title">{escape(title)}</text>'
    )
