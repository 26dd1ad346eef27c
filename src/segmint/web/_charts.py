"""Charts for the workspace as inline SVG: no script, no download, readable on a phone.

Each function returns markup for a ``<figure class="chart">`` with a ``<title>`` and
``<desc>`` (read by screen readers), labelled axes with their units, and values written
next to the marks (so a chart can be read without hovering). The SVG scales to the width
of its box (``viewBox``); labels are kept short enough for a 390 px screen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

__all__ = ["bars", "forest", "line"]

INK = "#1d2433"
MUTED = "#5b6475"
ACCENT = "#2f6fde"
GOOD = "#1e7d3a"
BAD = "#b42318"
GRID = "#dde1e8"


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _figure(svg: str, title: str, caption: str | None) -> Markup:
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return Markup(f'<figure class="chart">{svg}{cap}</figure>')


def _width(text: str, size: int = 14) -> int:
    """About how many px ``text`` takes at ``size`` px (CJK characters are square)."""
    return int(sum(size if ord(c) >= 0x2E80 else size * 0.57 for c in text))


def _clip(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def bars(
    rows: Sequence[tuple[str, float, str]],
    *,
    title: str,
    axis_label: str,
    caption: str | None = None,
    color: str = ACCENT,
) -> Markup:
    """Horizontal bars: ``rows`` of (label, value, value as text). ``axis_label`` names the
    quantity and its unit (``Users``, ``Revenue (EUR)``)."""
    height_row = 30
    top, right = 28, 90
    left = min(240, 14 + max([_width(_clip(label)) for label, _, _ in rows] + [32]))
    width = 640
    h = top + height_row * max(1, len(rows)) + 10
    vmax = max([abs(v) for _, v, _ in rows] + [1e-12])
    span = width - left - right
    parts = [
        f'<svg viewBox="0 0 {width} {h}" role="img">',
        f"<title>{_e(title)}</title><desc>{_e(axis_label)}: "
        + _e("; ".join(f"{label} {text}" for label, _, text in rows))
        + "</desc>",
        f'<text x="{left}" y="16" font-size="13" fill="{MUTED}">{_e(axis_label)}</text>',
    ]
    for i, (label, value, text) in enumerate(rows):
        y = top + i * height_row
        w = max(1.0, span * abs(value) / vmax) if value else 0
        parts.append(
            f'<text x="{left - 8}" y="{y + 19}" font-size="14" text-anchor="end" fill="{INK}">'
            f"{_e(_clip(label))}</text>"
            f'<rect x="{left}" y="{y + 5}" width="{w:.1f}" height="{height_row - 10}" rx="3" '
            f'fill="{color}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 19}" font-size="13" fill="{INK}">{_e(text)}</text>'
        )
    parts.append("</svg>")
    return _figure("".join(parts), title, caption)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    out = []
    x = start
    while x <= hi + 1e-12:
        out.append(round(x, 12))
        x += step
    return out


def forest(
    rows: Sequence[tuple[str, float, float, float, str]],
    *,
    title: str,
    axis_label: str,
    caption: str | None = None,
    fmt: object = None,
) -> Markup:
    """A forest plot: ``rows`` of (label, estimate, low, high, text), one line each with its
    interval, a dashed line at zero (no effect). Intervals wholly above zero are green,
    wholly below red, else grey. ``fmt`` formats tick values (default: ``{:+.0%}``)."""
    fmt_tick = fmt if callable(fmt) else (lambda v: f"{v:+.0%}")
    width, left, right, top = 640, 150, 130, 30
    row_h = 34
    h = top + row_h * max(1, len(rows)) + 34
    finite = [v for r in rows for v in r[1:4] if v is not None and math.isfinite(v)]
    lo = min(finite + [0.0])
    hi = max(finite + [0.0])
    pad = (hi - lo) * 0.08 or 0.05
    lo, hi = lo - pad, hi + pad
    span = width - left - right

    def x(v: float) -> float:
        return left + span * (v - lo) / (hi - lo)

    parts = [
        f'<svg viewBox="0 0 {width} {h}" role="img">',
        f"<title>{_e(title)}</title><desc>"
        + _e("; ".join(f"{r[0]}: {r[4]}" for r in rows))
        + "</desc>",
    ]
    axis_y = top + row_h * max(1, len(rows))
    for tv in _ticks(lo, hi):
        parts.append(
            f'<line x1="{x(tv):.1f}" x2="{x(tv):.1f}" y1="{top - 6}" y2="{axis_y}" stroke="{GRID}"/>'
            f'<text x="{x(tv):.1f}" y="{axis_y + 16}" font-size="12" text-anchor="middle" '
            f'fill="{MUTED}">{_e(fmt_tick(tv))}</text>'
        )
    parts.append(
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top - 10}" y2="{axis_y}" stroke="{INK}" '
        'stroke-dasharray="4 3"/>'
        f'<text x="{left + span / 2:.1f}" y="{axis_y + 32}" font-size="13" text-anchor="middle" '
        f'fill="{MUTED}">{_e(axis_label)}</text>'
    )
    for i, (label, est, low, high, text) in enumerate(rows):
        y = top + i * row_h + row_h / 2
        ok = all(v is not None and math.isfinite(v) for v in (est, low, high))
        color = MUTED
        if ok and low > 0:
            color = GOOD
        elif ok and high < 0:
            color = BAD
        parts.append(
            f'<text x="{left - 8}" y="{y + 5:.1f}" font-size="14" text-anchor="end" fill="{INK}">'
            f"{_e(_clip(label))}</text>"
        )
        if ok:
            parts.append(
                f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{color}" stroke-width="3"/>'
                f'<circle cx="{x(est):.1f}" cy="{y:.1f}" r="6" fill="{color}"/>'
            )
        parts.append(
            f'<text x="{width - right + 8}" y="{y + 5:.1f}" font-size="13" fill="{INK}">'
            f"{_e(text)}</text>"
        )
    parts.append("</svg>")
    return _figure("".join(parts), title, caption)


def line(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    axis_label: str,
    caption: str | None = None,
    width: int = 640,
) -> Markup:
    """A small line chart over time: ``points`` of (x label, value); the first, middle and
    last x labels are written under the axis, the largest value at the top of it. A
    smaller ``width`` (in the same units as the 12-unit labels) keeps text readable in a
    narrow box."""
    h, left, right, top, bottom = 180, 56, 12, 24, 30
    vals = [v for _, v in points]
    vmax = max(vals + [1.0])
    span_x = width - left - right
    span_y = h - top - bottom
    n = max(1, len(points) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + span_x * i / n, top + span_y * (1 - v / vmax)

    path = " ".join(
        f"{'M' if i == 0 else 'L'}{xy(i, v)[0]:.1f},{xy(i, v)[1]:.1f}"
        for i, (_, v) in enumerate(points)
    )
    parts = [
        f'<svg viewBox="0 0 {width} {h}" role="img">',
        f"<title>{_e(title)}</title><desc>{_e(axis_label)}: "
        + _e(", ".join(f"{k} {v:g}" for k, v in points[-10:]))
        + "</desc>",
        f'<text x="4" y="{top - 8}" font-size="12" fill="{MUTED}">{_e(axis_label)}</text>',
        f'<line x1="{left}" x2="{width - right}" y1="{h - bottom}" y2="{h - bottom}" stroke="{GRID}"/>',
        f'<text x="{left - 6}" y="{top + 4}" font-size="12" text-anchor="end" fill="{MUTED}">{vmax:g}</text>',
        f'<text x="{left - 6}" y="{h - bottom}" font-size="12" text-anchor="end" fill="{MUTED}">0</text>',
    ]
    if points:
        parts.append(f'<path d="{path}" fill="none" stroke="{ACCENT}" stroke-width="2.5"/>')
        for i in sorted({0, len(points) // 2, len(points) - 1}):
            x, _ = xy(i, 0)
            anchor = "start" if i == 0 else ("end" if i == len(points) - 1 else "middle")
            parts.append(
                f'<text x="{x:.1f}" y="{h - bottom + 18}" font-size="12" text-anchor="{anchor}" '
                f'fill="{MUTED}">{_e(points[i][0])}</text>'
            )
    parts.append("</svg>")
    return _figure("".join(parts), title, caption)
