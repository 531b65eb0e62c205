"""Charts as inline SVG, drawn on the server: pure functions from numbers to markup.

The dashboard must work on a closed network and without a JavaScript chart library, so every chart
is an ``<svg>`` string built here. Each one is an image to assistive technology (``role="img"``,
an ``aria-label`` and a ``<title>``), scales to its container through its ``viewBox``, and carries
its numbers as ``data-*`` attributes on the marks (``data-value``, ``data-low``, … plus whatever the
caller adds, e.g. ``data-variant``) so a browser test — or a curious analyst — reads values, not
pixels. Empty input gives a small chart that says there is no data yet, never an error.

Geometry is proportional: a bar's width is its value over the axis maximum times the plot width,
a flow band's thickness is visitors over the largest stage. All text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

__all__ = [
    "PALETTE",
    "Bar",
    "FlowLane",
    "FlowStage",
    "Series",
    "bar_chart",
    "calibration_plot",
    "flow_chart",
    "line_chart",
    "percent",
    "tile",
]

#: Mark colours, each at least 3:1 against white (WCAG 1.4.11 for graphics); series also differ by
#: dash pattern and marker, so colour is never the only cue.
PALETTE = ("#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4b5563")
_DASHES = ("", "6 3", "2 3", "8 3 2 3", "4 4", "1 2", "10 4", "3 6")
_TEXT = "#1f2937"
_MUTED = "#4b5563"
_GRID = "#d1d5db"
_DROP = "#b91c1c"
_FONT = 'font-family="system-ui, sans-serif"'


def percent(value: float | None, digits: int = 1) -> str:
    """``0.1234`` → ``12.3%``; ``None`` → ``–``."""
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def _n(value: float) -> str:
    """A coordinate: two decimals, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _attrs(attrs: Mapping[str, object]) -> str:
    return "".join(f' {escape(k)}="{escape(v)}"' for k, v in attrs.items())


def _svg(title: str, width: float, height: float, body: str, css_class: str) -> Markup:
    label = escape(title)
    return Markup(
        f'<svg class="chart {css_class}" role="img" aria-label="{label}" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" {_FONT} xmlns="http://www.w3.org/2000/svg">'
        f"<title>{label}</title>{body}</svg>"
    )


def _empty(title: str, css_class: str, message: str = "No data yet") -> Markup:
    body = f'<text x="16" y="34" font-size="14" fill="{_MUTED}" class="chart-empty">{escape(message)}</text>'
    return _svg(title, 400, 56, body, css_class + " chart-empty")


# ------------------------------------------------------------------------------------------ bars


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: a value (``None``: no data) and an optional interval, with extra ``data-*`` attributes."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    attrs: Mapping[str, object] = field(default_factory=dict)


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    fmt: Callable[[float], str] = percent,
    domain_max: float | None = None,
) -> Markup:
    """Horizontal bars with interval whiskers (e.g. conversion rate and its 95 % interval per variant).

    The axis runs from 0 to ``domain_max`` (default: the largest value or interval end, plus 10 %).
    """
    if not bars or all(b.value is None for b in bars):
        return _empty(title, "bar-chart")
    label_w, plot_x, plot_w, row_h, bar_h, top = 150.0, 160.0, 380.0, 34.0, 18.0, 28.0
    width = plot_x + plot_w + 100
    ends = [v for b in bars for v in (b.value, b.high) if v is not None]
    top_value = domain_max if domain_max is not None else max(max(ends), 0.0) * 1.1
    scale_max = top_value if top_value > 0 else 1.0

    def x(value: float) -> float:
        return plot_x + max(0.0, min(value, scale_max)) / scale_max * plot_w

    parts = [
        (
            f'<line x1="{_n(plot_x)}" y1="{_n(top - 6)}" x2="{_n(plot_x)}" y2="{_n(top + row_h * len(bars))}" '
            f'stroke="{_MUTED}" stroke-width="1"/>'
        ),
    ]
    for tick in (0.0, 0.5, 1.0):
        tx = plot_x + tick * plot_w
        parts.append(
            f'<text x="{_n(tx)}" y="16" font-size="11" fill="{_MUTED}" text-anchor="middle">'
            f"{escape(fmt(tick * scale_max))}</text>"
        )
        if tick:
            parts.append(
                f'<line x1="{_n(tx)}" y1="{_n(top - 6)}" x2="{_n(tx)}" y2="{_n(top + row_h * len(bars))}" '
                f'stroke="{_GRID}" stroke-dasharray="3 3"/>'
            )
    for i, bar in enumerate(bars):
        y = top + i * row_h
        mid = y + bar_h / 2
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<text x="{_n(label_w)}" y="{_n(mid + 4)}" font-size="13" fill="{_TEXT}" text-anchor="end">'
            f"{escape(bar.label)}</text>"
        )
        if bar.value is None:
            parts.append(
                f'<text x="{_n(plot_x + 6)}" y="{_n(mid + 4)}" font-size="12" fill="{_MUTED}">no data</text>'
            )
            continue
        data = {"data-label": bar.label, "data-value": repr(float(bar.value))}
        if bar.low is not None and bar.high is not None:
            data |= {"data-low": repr(float(bar.low)), "data-high": repr(float(bar.high))}
        data |= dict(bar.attrs)
        bar_w = x(bar.value) - plot_x
        parts.append(
            f'<rect class="bar" x="{_n(plot_x)}" y="{_n(y)}" width="{_n(bar_w)}" height="{_n(bar_h)}" '
            f'fill="{color}"{_attrs(data)}><title>{escape(bar.label)}: {escape(fmt(bar.value))}</title></rect>'
        )
        text_x = x(bar.value)
        if bar.low is not None and bar.high is not None:
            lo, hi = x(bar.low), x(bar.high)
            text_x = max(text_x, hi)
            parts.append(
                f'<g class="interval" stroke="{_TEXT}" stroke-width="1.5" data-low="{bar.low!r}" data-high="{bar.high!r}">'
                f'<line x1="{_n(lo)}" y1="{_n(mid)}" x2="{_n(hi)}" y2="{_n(mid)}"/>'
                f'<line x1="{_n(lo)}" y1="{_n(y + 3)}" x2="{_n(lo)}" y2="{_n(y + bar_h - 3)}"/>'
                f'<line x1="{_n(hi)}" y1="{_n(y + 3)}" x2="{_n(hi)}" y2="{_n(y + bar_h - 3)}"/></g>'
            )
        parts.append(
            f'<text x="{_n(text_x + 6)}" y="{_n(mid + 4)}" font-size="12" fill="{_TEXT}">{escape(fmt(bar.value))}</text>'
        )
    height = top + row_h * len(bars) + 4
    return _svg(title, width, height, "".join(parts), "bar-chart")


# ------------------------------------------------------------------------------------------ lines


@dataclass(frozen=True, slots=True)
class Series:
    """One line: a value per x label (``None``: a gap), and extra ``data-*`` attributes for its points."""

    name: str
    values: Sequence[float | None]
    attrs: Mapping[str, object] = field(default_factory=dict)


def line_chart(
    series: Sequence[Series],
    x_labels: Sequence[str],
    *,
    title: str,
    fmt: Callable[[float], str] = percent,
    y_min: float | None = None,
    y_max: float | None = None,
) -> Markup:
    """Lines over shared x labels (days, weeks), with a legend; the y axis spans the data unless
    ``y_min`` / ``y_max`` fix it (e.g. NPS −100…100)."""
    values = [v for s in series for v in s.values if v is not None]
    if not x_labels or not values:
        return _empty(title, "line-chart")
    left, right, top, plot_h = 64.0, 24.0, 16.0, 200.0
    plot_w = 560.0
    width = left + plot_w + right
    low = y_min if y_min is not None else min(0.0, min(values))
    high = y_max if y_max is not None else max(values) * 1.1
    if high <= low:
        high = low + 1.0
    n = len(x_labels)

    def px(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n)

    def py(v: float) -> float:
        return top + plot_h - (max(low, min(v, high)) - low) / (high - low) * plot_h

    parts = []
    for k in range(5):
        v = low + (high - low) * k / 4
        y = py(v)
        parts.append(
            f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(left + plot_w)}" y2="{_n(y)}" stroke="{_GRID}"/>'
            f'<text x="{_n(left - 6)}" y="{_n(y + 4)}" font-size="11" fill="{_MUTED}" text-anchor="end">'
            f"{escape(fmt(v))}</text>"
        )
    step = max(1, math.ceil(n / 8))  # at most ~8 x labels, so they never overlap
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == n - 1:
            parts.append(
                f'<text x="{_n(px(i))}" y="{_n(top + plot_h + 16)}" font-size="11" fill="{_MUTED}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    for s_index, s in enumerate(series):
        color = PALETTE[s_index % len(PALETTE)]
        dash = _DASHES[s_index % len(_DASHES)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values[:n]):
            if v is None:
                runs.append([])
                continue
            runs[-1].append(f"{_n(px(i))},{_n(py(v))}")
        group = [f'<g class="series" data-series="{escape(s.name)}">']
        for run in runs:
            if len(run) > 1:
                group.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="2"'
                    + (f' stroke-dasharray="{dash}"' if dash else "")
                    + "/>"
                )
        for i, v in enumerate(s.values[:n]):
            if v is None:
                continue
            data = {"data-series": s.name, "data-x": x_labels[i], "data-value": repr(float(v))} | dict(s.attrs)
            group.append(
                f'<circle class="point" cx="{_n(px(i))}" cy="{_n(py(v))}" r="3.5" fill="{color}"{_attrs(data)}>'
                f"<title>{escape(s.name)}, {escape(x_labels[i])}: {escape(fmt(v))}</title></circle>"
            )
        group.append("</g>")
        parts.append("".join(group))
    legend_y = top + plot_h + 36
    per_row = 3
    for s_index, s in enumerate(series):
        lx = left + (s_index % per_row) * (plot_w / per_row)
        ly = legend_y + (s_index // per_row) * 18
        color = PALETTE[s_index % len(PALETTE)]
        dash = _DASHES[s_index % len(_DASHES)]
        parts.append(
            f'<line x1="{_n(lx)}" y1="{_n(ly - 4)}" x2="{_n(lx + 22)}" y2="{_n(ly - 4)}" stroke="{color}" '
            f'stroke-width="2"' + (f' stroke-dasharray="{dash}"' if dash else "") + "/>"
            f'<text x="{_n(lx + 28)}" y="{_n(ly)}" font-size="12" fill="{_TEXT}">{escape(s.name)}</text>'
        )
    height = legend_y + math.ceil(len(series) / per_row) * 18
    return _svg(title, width, height, "".join(parts), "line-chart")


# ------------------------------------------------------------------------------------------ flow


@dataclass(frozen=True, slots=True)
class FlowStage:
    """One stage in a lane: visitors who reached it, how many went on to the next stage (``None`` for
    the last), and short annotation lines (UX and CX numbers) drawn under it."""

    name: str
    reached: int
    continued: int | None = None
    annotations: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class FlowLane:
    """One row of the flow: a variant (or everyone) through the same stages."""

    name: str
    stages: Sequence[FlowStage]


def flow_chart(lanes: Sequence[FlowLane], *, title: str) -> Markup:
    """A Sankey-style flow, stages left to right, one lane per variant on one shared scale.

    A stage is a bar as tall as the visitors who reached it; the band to the next stage is as thick
    as those who continued; the red band falling away below is the drop-off.
    """
    stage_count = max((len(lane.stages) for lane in lanes), default=0)
    biggest = max((s.reached for lane in lanes for s in lane.stages), default=0)
    if stage_count == 0 or biggest <= 0:
        return _empty(title, "flow-chart")
    left, node_w, max_h, col_w = 16.0, 16.0, 110.0, 170.0
    notes = max((len(s.annotations) for lane in lanes for s in lane.stages), default=0)
    lane_h = 24 + max_h + 34 + 14 * (notes + 2) + 16
    width = left + col_w * stage_count + 20
    scale = max_h / biggest
    parts = []
    for lane_index, lane in enumerate(lanes):
        base = lane_index * lane_h
        top = base + 24
        color = PALETTE[lane_index % len(PALETTE)]
        parts.append(
            f'<g class="lane" data-lane="{escape(lane.name)}">'
            f'<text x="{_n(left)}" y="{_n(base + 16)}" font-size="14" font-weight="600" fill="{_TEXT}">'
            f"{escape(lane.name)}</text>"
        )
        for i, stage in enumerate(lane.stages):
            x = left + i * col_w
            h = stage.reached * scale
            data = {"data-lane": lane.name, "data-stage": stage.name, "data-reached": stage.reached}
            parts.append(
                f'<rect class="stage" x="{_n(x)}" y="{_n(top)}" width="{_n(node_w)}" height="{_n(max(h, 1.0))}" '
                f'fill="{color}"{_attrs(data)}><title>{escape(stage.name)}: {stage.reached:,} visitors</title></rect>'
            )
            if stage.continued is not None and i + 1 < len(lane.stages):
                thick = min(stage.continued, stage.reached) * scale
                x0, x1 = x + node_w, x + col_w
                if thick > 0:
                    mx = (x0 + x1) / 2
                    parts.append(
                        f'<path class="link" d="M{_n(x0)},{_n(top)} C{_n(mx)},{_n(top)} {_n(mx)},{_n(top)} '
                        f'{_n(x1)},{_n(top)} L{_n(x1)},{_n(top + thick)} C{_n(mx)},{_n(top + thick)} '
                        f'{_n(mx)},{_n(top + thick)} {_n(x0)},{_n(top + thick)} Z" fill="{color}" '
                        f'fill-opacity="0.35" data-lane="{escape(lane.name)}" data-from="{escape(stage.name)}" '
                        f'data-to="{escape(lane.stages[i + 1].name)}" data-visitors="{stage.continued}">'
                        f"<title>{escape(stage.name)} → {escape(lane.stages[i + 1].name)}: "
                        f"{stage.continued:,} visitors</title></path>"
                    )
                dropped = max(stage.reached - stage.continued, 0)
                drop = dropped * scale
                if drop > 0:
                    y0 = top + thick
                    parts.append(
                        f'<path class="drop" d="M{_n(x0)},{_n(y0)} Q{_n(x0 + 40)},{_n(y0)} {_n(x0 + 46)},{_n(top + max_h + 24)} '
                        f'L{_n(x0 + 46 - min(drop, 30))},{_n(top + max_h + 24)} Q{_n(x0 + 34 - min(drop, 30) / 2)},'
                        f'{_n(y0 + drop)} {_n(x0)},{_n(y0 + drop)} Z" fill="{_DROP}" fill-opacity="0.3" '
                        f'data-lane="{escape(lane.name)}" data-stage="{escape(stage.name)}" data-drop="{dropped}">'
                        f"<title>{escape(stage.name)}: {dropped:,} visitors left</title></path>"
                    )
            ty = top + max_h + 44
            parts.append(
                f'<text x="{_n(x)}" y="{_n(ty)}" font-size="13" font-weight="600" fill="{_TEXT}">'
                f"{escape(stage.name)}</text>"
                f'<text x="{_n(x)}" y="{_n(ty + 15)}" font-size="12" fill="{_TEXT}">{stage.reached:,} visitors</text>'
            )
            for k, note in enumerate(stage.annotations):
                parts.append(
                    f'<text x="{_n(x)}" y="{_n(ty + 30 + 14 * k)}" font-size="11" fill="{_MUTED}">{escape(note)}</text>'
                )
        parts.append("</g>")
    return _svg(title, width, lane_h * len(lanes), "".join(parts), "flow-chart")


# ------------------------------------------------------------------------------------------ calibration


def calibration_plot(points: Sequence[Sequence[float]], *, title: str) -> Markup:
    """Predicted probability (x) against observed frequency (y) per bin, with the diagonal of a
    perfectly calibrated model; a point's area grows with the rows in its bin.
    ``points``: ``(mean_predicted, fraction_positive, count)`` rows, as on a model card."""
    if not points:
        return _empty(title, "calibration-plot")
    left, top, size = 44.0, 12.0, 220.0
    biggest = max(float(p[2]) for p in points) or 1.0

    def px(v: float) -> float:
        return left + max(0.0, min(v, 1.0)) * size

    def py(v: float) -> float:
        return top + size - max(0.0, min(v, 1.0)) * size

    parts = [
        f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(size)}" height="{_n(size)}" fill="none" stroke="{_GRID}"/>',
        (
            f'<line class="diagonal" x1="{_n(px(0))}" y1="{_n(py(0))}" x2="{_n(px(1))}" y2="{_n(py(1))}" '
            f'stroke="{_MUTED}" stroke-dasharray="4 4"/>'
        ),
    ]
    for t in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{_n(px(t))}" y="{_n(top + size + 16)}" font-size="11" fill="{_MUTED}" text-anchor="middle">{t:g}</text>'
            f'<text x="{_n(left - 6)}" y="{_n(py(t) + 4)}" font-size="11" fill="{_MUTED}" text-anchor="end">{t:g}</text>'
        )
    parts.append(
        f'<text x="{_n(left + size / 2)}" y="{_n(top + size + 32)}" font-size="12" fill="{_TEXT}" '
        f'text-anchor="middle">predicted</text>'
        f'<text x="12" y="{_n(top + size / 2)}" font-size="12" fill="{_TEXT}" text-anchor="middle" '
        f'transform="rotate(-90 12 {_n(top + size / 2)})">observed</text>'
    )
    ordered = sorted(points, key=lambda p: float(p[0]))
    line = " ".join(f"{_n(px(float(p[0])))},{_n(py(float(p[1])))}" for p in ordered)
    parts.append(f'<polyline points="{line}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.5"/>')
    for predicted, observed, count in ((float(p[0]), float(p[1]), int(p[2])) for p in ordered):
        r = 2.5 + 5.5 * math.sqrt(count / biggest)
        parts.append(
            f'<circle class="bin" cx="{_n(px(predicted))}" cy="{_n(py(observed))}" r="{_n(r)}" fill="{PALETTE[0]}" '
            f'fill-opacity="0.8" data-predicted="{predicted!r}" data-observed="{observed!r}" data-count="{count}">'
            f"<title>predicted {predicted:.2f}, observed {observed:.2f} ({count:,} rows)</title></circle>"
        )
    return _svg(title, left + size + 16, top + size + 40, "".join(parts), "calibration-plot")


# ------------------------------------------------------------------------------------------ tiles


def tile(title: str, metrics: Sequence[tuple[str, str | Sequence[str]]], *, heading_level: int = 3) -> Markup:
    """A metric tile: a heading and label/value pairs (HTML, not SVG: text reflows on a phone). A value
    given as several lines (e.g. one per variant) gets one line each."""

    def value(v: str | Sequence[str]) -> str:
        if isinstance(v, str):
            return str(escape(v))
        return "".join(f'<span class="line">{escape(line)}</span>' for line in v)

    rows = "".join(f"<div><dt>{escape(k)}</dt><dd>{value(v)}</dd></div>" for k, v in metrics)
    if not metrics:
        rows = "<div><dt>Data</dt><dd>none yet</dd></div>"
    h = min(max(heading_level, 2), 6)
    return Markup(f'<section class="tile"><h{h}>{escape(title)}</h{h}><dl>{rows}</dl></section>')
