"""Inline SVG charts drawn in Python: no JavaScript, no external assets.

Every text value is escaped with ``markupsafe.escape`` before it enters the SVG; only the
finished chart is wrapped in ``Markup``, so a template can embed it without ``|safe``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from markupsafe import Markup, escape

SEVERITIES: tuple[str, ...] = ("high", "medium", "low", "info")
SEVERITY_COLOURS: Mapping[str, str] = {
    "high": "#c62828",
    "medium": "#e07b00",
    "low": "#2f6fb5",
    "info": "#8a94a6",
}
# Used for series that are not severities (e.g. a trend counted by rule).
PALETTE: tuple[str, ...] = ("#3b5b92", "#4f9d8f", "#b0764a", "#8761a8", "#5c8a3a", "#a8485e")
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\""

Counts = Mapping[str, Mapping[str, int]]


def series_colour(name: str, index: int) -> str:
    """Return the colour for a series: severity colours first, then the palette."""
    return SEVERITY_COLOURS.get(name, PALETTE[index % len(PALETTE)])


def findings_bar_chart(counts: Counts, series: Sequence[str] = SEVERITIES) -> Markup:
    """Draw horizontal stacked bars, one per label (e.g. rule), split by series (severity)."""
    labels = list(counts)
    if not labels:
        return Markup("")
    bar_h, gap, label_w, plot_w, right = 22, 10, 170, 520, 60
    legend_h = 28
    height = legend_h + len(labels) * (bar_h + gap)
    width = label_w + plot_w + right
    largest = max(sum(counts[label].values()) for label in labels) or 1
    parts = [_svg_open(width, height, "Findings by rule and severity"), _legend(series, 0, 0)]
    for row, label in enumerate(labels):
        y = legend_h + row * (bar_h + gap)
        parts.append(_text(label_w - 8, y + bar_h / 2 + 4, _shorten(label, 24), "end"))
        x = float(label_w)
        for index, name in enumerate(series):
            value = int(counts[label].get(name, 0))
            if value:
                w = value / largest * plot_w
                tip = f"{label}: {value} {name}"
                parts.append(_rect(x, y, w, bar_h, series_colour(name, index), tip))
                x += w
        total = sum(int(v) for v in counts[label].values())
        parts.append(_text(x + 6, y + bar_h / 2 + 4, str(total), "start", bold=True))
    parts.append("</svg>")
    return Markup("".join(parts))


def trend_chart(points: Sequence[tuple[str, Mapping[str, int]]], series: Sequence[str]) -> Markup:
    """Draw stacked columns, one per run (oldest left), split by series."""
    if not points:
        return Markup("")
    col_w, gap, left, top, plot_h, bottom = 34, 26, 44, 40, 170, 40
    legend_w = sum(28 + 7 * min(len(name), 20) for name in series)
    width = max(left + len(points) * (col_w + gap) + gap, left + legend_w + 20)
    height = top + plot_h + bottom
    largest = max(sum(int(v) for v in counts.values()) for _, counts in points) or 1
    parts = [_svg_open(width, height, "Findings per run"), _legend(series, left, 0)]
    parts.append(_axis(left, top, plot_h, width, largest))
    for col, (run_id, counts) in enumerate(points):
        x = left + gap + col * (col_w + gap)
        y = float(top + plot_h)
        for index, name in enumerate(series):
            value = int(counts.get(name, 0))
            if value:
                h = value / largest * plot_h
                y -= h
                tip = f"{run_id}: {value} {name}"
                parts.append(_rect(x, y, col_w, h, series_colour(name, index), tip))
        total = sum(int(v) for v in counts.values())
        parts.append(_text(x + col_w / 2, y - 4, str(total), "middle", bold=True))
        parts.append(_run_label(x + col_w / 2, top + plot_h + 16, run_id))
    parts.append("</svg>")
    return Markup("".join(parts))


def _svg_open(width: float, height: float, title: str) -> str:
    return (
        f'<svg class="chart" role="img" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'aria-label="{escape(title)}" {FONT} font-size="12"><title>{escape(title)}</title>'
    )


def _legend(series: Sequence[str], x0: float, y0: float) -> str:
    parts, x = [], x0
    for index, name in enumerate(series):
        colour = series_colour(name, index)
        parts.append(f'<rect x="{x:.1f}" y="{y0 + 4:.1f}" width="12" height="12" rx="2" ')
        parts.append(f'fill="{colour}"/>')
        parts.append(_text(x + 16, y0 + 14, _shorten(name, 20), "start"))
        x += 28 + 7 * min(len(name), 20)
    return "".join(parts)


def _axis(left: float, top: float, plot_h: float, width: float, largest: int) -> str:
    base = top + plot_h
    return (
        f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#c9ced6"/>'
        f'<line x1="{left}" y1="{top}" x2="{width}" y2="{top}" stroke="#eef0f3"/>'
        + _text(left - 6, base + 4, "0", "end")
        + _text(left - 6, top + 4, str(largest), "end")
    )


def _rect(x: float, y: float, w: float, h: float, colour: str, tip: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{colour}">'
        f"<title>{escape(tip)}</title></rect>"
    )


def _text(x: float, y: float, value: str, anchor: str, *, bold: bool = False) -> str:
    weight = ' font-weight="600"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="#1f2937"{weight}>'
        f"{escape(value)}</text>"
    )


def _run_label(x: float, y: float, run_id: str) -> str:
    day, clock = run_label(run_id)
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle" fill="#4b5563" font-size="11">'
        f"<title>{escape(run_id)}</title>{escape(day)}"
        f'<tspan x="{x:.1f}" dy="13" font-size="10">{escape(clock)}</tspan></text>'
    )


def run_label(run_id: str) -> tuple[str, str]:
    """Return a short two-line label for a run id ("May 01", "02:00"); raw text if not a time."""
    try:
        when = datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return _shorten(run_id, 10), ""
    return when.strftime("%b %d"), when.strftime("%H:%M")


def _shorten(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
