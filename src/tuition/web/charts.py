"""Server-rendered SVG charts for the dashboard: bars per day, a line, horizontal bars.

Plain SVG with CSS classes (styled in tuition.css), an accessible name, and a ``<title>``
on every mark for a hover tooltip; each chart is shown beside a table of its numbers.
No JavaScript and nothing fetched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from decimal import Decimal
from html import escape

from markupsafe import Markup

Format = Callable[[int], str]
_ids = itertools.count(1)

WIDTH, HEIGHT = 560, 280
LEFT, RIGHT, TOP, BOTTOM = 76, 12, 16, 32


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2, 2.5 or 5 x 10^n that is >= ``value`` (at least 1)."""
    if value <= 0:
        return 1
    magnitude = int(10 ** (len(str(value)) - 1))
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5)):
        if value <= step * magnitude:
            return int(step * magnitude)
    return 10 * magnitude


def _open(label: str) -> tuple[str, str]:
    n = next(_ids)
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-{n}" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="chart-{n}">{escape(label)}</title>'
    )
    return head, "</svg>"


def _scale(values: Sequence[int]) -> tuple[int, int]:
    top = nice_ceiling(max([0, *values]))
    bottom = -nice_ceiling(-min(values)) if values and min(values) < 0 else 0
    return bottom, top


def _y(value: int, bottom: int, top: int) -> float:
    span = top - bottom or 1
    return TOP + (HEIGHT - TOP - BOTTOM) * (top - value) / span


def _axes(bottom: int, top: int, tick: Format) -> list[str]:
    parts = []
    for n in range(5):
        value = bottom + (top - bottom) * n // 4
        y = _y(value, bottom, top)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(tick(value))}</text>'
        )
    zero = _y(0, bottom, top)
    parts.append(
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}"/>'
    )
    return parts


def _x_labels(labels: Sequence[str], step: float) -> list[str]:
    # About eight labels fit; counted back from the last (today), which is always shown.
    every = max(1, -(-len(labels) // 8))
    last = len(labels) - 1
    return [
        f'<text x="{LEFT + step * (i + 0.5):.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
        f"{escape(text)}</text>"
        for i, text in enumerate(labels)
        if (last - i) % every == 0
    ]


def bar_chart(
    labels: Sequence[str], values: Sequence[int], *, title: str, tick: Format, value: Format
) -> Markup:
    """Vertical bars, one per label (e.g. per day)."""
    head, tail = _open(title)
    bottom, top = _scale(values)
    step = (WIDTH - LEFT - RIGHT) / max(1, len(values))
    parts = [head, *_axes(bottom, top, tick)]
    zero = _y(0, bottom, top)
    for i, (text, v) in enumerate(zip(labels, values, strict=True)):
        y = _y(v, bottom, top)
        x = LEFT + step * i + step * 0.15
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{min(y, zero):.1f}" width="{step * 0.7:.1f}" '
            f'height="{max(abs(zero - y), 0.5):.1f}" rx="2"><title>{escape(text)}: '
            f"{escape(value(v))}</title></rect>"
        )
    parts += _x_labels(labels, step)
    return Markup("".join([*parts, tail]))  # noqa: S704 - every text above is escaped


def line_chart(
    labels: Sequence[str], values: Sequence[int], *, title: str, tick: Format, value: Format
) -> Markup:
    """A line with dots, shaded to zero."""
    head, tail = _open(title)
    bottom, top = _scale(values)
    step = (WIDTH - LEFT - RIGHT) / max(1, len(values))
    points = [(LEFT + step * (i + 0.5), _y(v, bottom, top)) for i, v in enumerate(values)]
    parts = [head, *_axes(bottom, top, tick)]
    if points:
        zero = _y(0, bottom, top)
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        area = f"{points[0][0]:.1f},{zero:.1f} {path} {points[-1][0]:.1f},{zero:.1f}"
        parts.append(f'<polygon class="area" points="{area}"/>')
        parts.append(f'<polyline class="line" points="{path}"/>')
        for (x, y), text, v in zip(points, labels, values, strict=True):
            parts.append(
                f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3.5"><title>{escape(text)}: '
                f"{escape(value(v))}</title></circle>"
            )
    parts += _x_labels(labels, step)
    return Markup("".join([*parts, tail]))  # noqa: S704 - every text above is escaped


def hbar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    value_labels: Sequence[str],
    maximum: float | None = None,
) -> Markup:
    """Horizontal bars with their value written at the end (e.g. rate per channel)."""
    n = max(1, len(values))
    row = 40
    height = TOP + row * n + 8
    head, tail = _open(title)
    head = head.replace(f'viewBox="0 0 {WIDTH} {HEIGHT}"', f'viewBox="0 0 {WIDTH} {height}"')
    top = maximum if maximum is not None else max([0.0, *values]) or 1.0
    left, span = 110, WIDTH - 110 - 130
    parts = [head]
    for i, (text, v, shown) in enumerate(zip(labels, values, value_labels, strict=True)):
        y = TOP + row * i
        width = max(span * (v / top if top else 0), 1)
        parts.append(
            f'<text x="{left - 8}" y="{y + 21}" text-anchor="end">{escape(text)}</text>'
            f'<rect class="bar-alt" x="{left}" y="{y + 4}" width="{width:.1f}" height="26" rx="3">'
            f"<title>{escape(text)}: {escape(shown)}</title></rect>"
            f'<text class="value-label" x="{left + width + 6:.1f}" y="{y + 21}">'
            f"{escape(shown)}</text>"
        )
    return Markup("".join([*parts, tail]))  # noqa: S704 - every text above is escaped
