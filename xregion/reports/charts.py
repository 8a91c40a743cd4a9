"""Charts as inline SVG, generated in Python: no script, no network, no library to serve.

Each function returns one self-contained ``<svg>`` element (``viewBox`` scaled to the width
of its container, ``role="img"`` with a ``<title>`` and ``<desc>`` naming every value for
screen readers) that an HTML report embeds as it is and the dashboard serves as
``image/svg+xml``. Every text from data is XML-escaped. Colours are fixed per series so a
region keeps its colour across charts; they print legibly in grey too (each series also has
its own dash pattern or a label on the bar).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#b3261e", "#1f5fa8", "#1b7f3b", "#c77700", "#6a3d9a", "#00838f", "#8d6e63", "#546e7a", "#ad1457")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4")
FONT = "'Noto Sans CJK SC','Source Han Sans SC','WenQuanYi Zen Hei','PingFang SC','Microsoft YaHei',sans-serif"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Series:
    """A named row of values, one per category (None: no value)."""

    name: str
    values: tuple[float | None, ...]
    color: str | None = None


def color_of(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if not float(value).is_integer() else str(int(value))


def _fmt(value: float, percent: bool) -> str:
    return f"{value * 100:.0f}%" if percent else _num(value)


def nice_max(value: float) -> float:
    """A round upper bound of a count axis at or above ``value``, four whole ticks apart:
    4 for up to 4, else 4 × (1, 2, 2.5, 5 × 10ⁿ)."""
    if value <= 4:
        return 4.0
    quarter = value / 4
    power = 10 ** math.floor(math.log10(quarter))
    for step in (1, 2, 2.5, 5, 10):
        if quarter <= step * power and float(step * power).is_integer():
            return float(4 * step * power)
    return float(40 * power)


def _open(width: int, height: int, title: str, desc: str, css_class: str) -> tuple[str, str]:
    n = next(_ids)
    tid, did = f"chart-{n}-t", f"chart-{n}-d"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="{tid} {did}" '
        f'style="width:100%;max-width:{width * 2}px;height:auto;font-family:{FONT}">'
        f'<title id="{tid}">{escape(title)}</title><desc id="{did}">{escape(desc)}</desc>'
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<text x="8" y="18" font-size="14" font-weight="600" fill="#1d2733">{escape(title)}</text>'
    )
    return head, "</svg>"


def _empty(width: int, height: int, title: str, css_class: str) -> str:
    head, tail = _open(width, height, title, "暂无数据 no data", css_class)
    return (
        head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="13" fill="#6b7785">'
        "暂无数据 no data</text>" + tail
    )


def _legend(series: Sequence[Series], x: float, y: float, line: bool) -> str:
    out = []
    for i, s in enumerate(series):
        color = s.color or color_of(i)
        yy = y + i * 16
        if line:
            dash = DASHES[i % len(DASHES)]
            out.append(
                f'<line x1="{x}" y1="{yy - 4}" x2="{x + 18}" y2="{yy - 4}" stroke="{color}" stroke-width="2.5"'
                + (f' stroke-dasharray="{dash}"' if dash else "")
                + "/>"
            )
        else:
            out.append(f'<rect x="{x}" y="{yy - 10}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{x + 22}" y="{yy}" font-size="12" fill="#1d2733">{escape(s.name)}</text>')
    return "".join(out)


def _y_axis(left: float, top: float, plot_w: float, plot_h: float, top_value: float, percent: bool) -> str:
    out = []
    for i in range(5):
        value = top_value * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e7ec"/>')
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#6b7785">'
            f"{_fmt(value, percent)}</text>"
        )
    return "".join(out)


def _x_labels(labels: Sequence[str], left: float, step: float, y: float, centre: bool) -> str:
    rotate = len(labels) > 8 or max((len(s) for s in labels), default=0) * len(labels) * 7 > step * len(labels)
    out = []
    for i, label in enumerate(labels):
        x = left + step * i + (step / 2 if centre else 0)
        if rotate:
            out.append(
                f'<text x="{x:.1f}" y="{y}" font-size="11" text-anchor="end" fill="#1d2733" '
                f'transform="rotate(-35 {x:.1f} {y})">{escape(label)}</text>'
            )
        else:
            out.append(
                f'<text x="{x:.1f}" y="{y}" font-size="11" text-anchor="middle" fill="#1d2733">{escape(label)}</text>'
            )
    return "".join(out)


def _describe(labels: Sequence[str], series: Sequence[Series], percent: bool) -> str:
    parts = []
    for s in series:
        values = ", ".join(
            f"{label}: {'—' if v is None else _fmt(v, percent)}" for label, v in zip(labels, s.values, strict=False)
        )
        parts.append(f"{s.name} — {values}")
    return "; ".join(parts)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    percent: bool = False,
    width: int = 640,
    height: int = 280,
    css_class: str = "line",
) -> str:
    """One line per series over ``labels`` (e.g. weeks); a point marks every value."""
    values = [v for s in series for v in s.values if v is not None]
    if not labels or not series:
        return _empty(width, height, title, css_class)
    legend_w = 130
    left, top, right, bottom = 44.0, 32.0, float(legend_w + 10), 52.0
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = 1.0 if percent else nice_max(max(values, default=0.0))
    step = plot_w / max(1, len(labels) - 1) if len(labels) > 1 else plot_w
    head, tail = _open(width, height, title, _describe(labels, series, percent), css_class)
    body = [_y_axis(left, top, plot_w, plot_h, top_value, percent)]
    for i, s in enumerate(series):
        color = s.color or color_of(i)
        points = [
            (left + (step * j if len(labels) > 1 else plot_w / 2), top + plot_h - plot_h * (v / top_value))
            for j, v in enumerate(s.values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            dash = DASHES[i % len(DASHES)]
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.5"'
                + (f' stroke-dasharray="{dash}"' if dash else "")
                + "/>"
            )
        for (x, y), v in zip(points, [v for v in s.values if v is not None], strict=True):
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"><title>{escape(s.name)}: '
                f"{_fmt(v, percent)}</title></circle>"
            )
    body.append(
        _x_labels(labels, left, step if len(labels) > 1 else 0, height - bottom + 18, False)
        if len(labels) > 1
        else _x_labels(labels, left, plot_w, height - bottom + 18, True)
    )
    body.append(_legend(series, width - legend_w, top + 10, True))
    return head + "".join(body) + tail


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    percent: bool = False,
    width: int = 640,
    height: int = 280,
    stacked: bool = False,
    css_class: str = "bars",
) -> str:
    """Grouped (or stacked) vertical bars: one group per category, one bar per series; each
    bar is labelled with its value."""
    values = [v for s in series for v in s.values if v is not None]
    if not categories or not series or not values:
        return _empty(width, height, title, css_class)
    legend_w = 130 if len(series) > 1 else 0
    left, top, right, bottom = 44.0, 32.0, float(legend_w + 10), 46.0
    plot_w, plot_h = width - left - right, height - top - bottom
    if stacked:
        totals = [sum(s.values[i] or 0 for s in series) for i in range(len(categories))]
        top_value = 1.0 if percent else nice_max(max(totals, default=0.0))
    else:
        top_value = 1.0 if percent else nice_max(max(values))
    group = plot_w / len(categories)
    bar_w = group * 0.8 / (1 if stacked else len(series))
    head, tail = _open(width, height, title, _describe(categories, series, percent), css_class)
    body = [_y_axis(left, top, plot_w, plot_h, top_value, percent)]
    for c in range(len(categories)):
        base = top + plot_h
        for i, s in enumerate(series):
            v = s.values[c] if c < len(s.values) else None
            if v is None:
                continue
            color = s.color or color_of(i)
            h = plot_h * (v / top_value)
            x = left + group * c + group * 0.1 + (0 if stacked else bar_w * i)
            y = base - h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0):.1f}" fill="{color}">'
                f"<title>{escape(s.name)} · {escape(categories[c])}: {_fmt(v, percent)}</title></rect>"
            )
            if v and (not stacked or h > 12):
                ty = y - 3 if not stacked else y + 12
                fill = "#1d2733" if not stacked else "#fff"
                body.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{ty:.1f}" font-size="10" text-anchor="middle" '
                    f'fill="{fill}">{_fmt(v, percent)}</text>'
                )
            if stacked:
                base = y
    body.append(_x_labels(categories, left, group, height - bottom + 16, True))
    if legend_w:
        body.append(_legend(series, width - legend_w, top + 10, False))
    return head + "".join(body) + tail


def hbar_chart(
    title: str,
    items: Sequence[tuple[str, float | None, str]],
    *,
    percent: bool = True,
    width: int = 640,
    css_class: str = "hbars",
) -> str:
    """One horizontal bar per item ``(label, value, note)``; None draws "—" (no value)."""
    if not items:
        return _empty(width, 120, title, css_class)
    row = 28
    height = 40 + row * len(items) + 14
    left, right = 120.0, 150.0
    plot_w = width - left - right
    values = [v for _, v, _ in items if v is not None]
    top_value = 1.0 if percent else nice_max(max(values, default=0.0))
    desc = "; ".join(f"{label}: {'—' if v is None else _fmt(v, percent)} {note}" for label, v, note in items)
    head, tail = _open(width, height, title, desc, css_class)
    body = []
    for i, (label, value, note) in enumerate(items):
        y = 36 + row * i
        body.append(
            f'<text x="{left - 8}" y="{y + 15}" font-size="12" text-anchor="end" fill="#1d2733">{escape(label)}</text>'
        )
        body.append(f'<rect x="{left}" y="{y + 3}" width="{plot_w:.1f}" height="16" fill="#eef1f4"/>')
        if value is not None:
            w = plot_w * (value / top_value)
            body.append(
                f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="16" fill="{color_of(i)}">'
                f"<title>{escape(label)}: {_fmt(value, percent)}</title></rect>"
            )
        text = ("—" if value is None else _fmt(value, percent)) + (f"  {note}" if note else "")
        body.append(f'<text x="{left + plot_w + 8}" y="{y + 15}" font-size="12" fill="#1d2733">{escape(text)}</text>')
    return head + "".join(body) + tail


__all__ = ["PALETTE", "Series", "bar_chart", "color_of", "hbar_chart", "line_chart", "nice_max"]
