"""The dashboard's SVG charts: proportional geometry, intervals drawn, labels present, empty data handled."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from api.dashboard.charts import (
    Bar,
    FlowLane,
    FlowStage,
    Series,
    bar_chart,
    calibration_plot,
    flow_chart,
    line_chart,
    percent,
    tile,
)

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    """The chart must be well-formed XML (an SVG document), so a browser draws it the same way."""
    return ET.fromstring(str(markup))


def _marks(root: ET.Element, tag: str, css_class: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if e.get("class") == css_class]


def _accessible(root: ET.Element, title: str) -> None:
    assert root.get("role") == "img"
    assert root.get("aria-label") == title
    assert root.find(f"{SVG}title").text == title


def test_bar_widths_are_proportional_to_values_and_intervals_are_drawn() -> None:
    bars = [
        Bar("Control", 0.10, 0.08, 0.12, attrs={"data-variant": 0, "data-rate": "0.1"}),
        Bar("Variant 1", 0.20, 0.17, 0.23, attrs={"data-variant": 1, "data-rate": "0.2"}),
        Bar("Variant 2", 0.05),
    ]
    root = _parse(bar_chart(bars, title="Rate per variant", domain_max=0.4))
    _accessible(root, "Rate per variant")
    rects = _marks(root, "rect", "bar")
    widths = [float(r.get("width")) for r in rects]
    assert widths[1] == pytest.approx(2 * widths[0]) and widths[0] == pytest.approx(2 * widths[2])
    assert [r.get("data-variant") for r in rects[:2]] == ["0", "1"]
    assert float(rects[1].get("data-rate")) == 0.2 and float(rects[1].get("data-value")) == 0.2
    assert rects[0].get("data-low") == "0.08" and rects[0].get("data-high") == "0.12"
    # Whiskers: one interval group per bar that has one, spanning low → high on the same scale.
    intervals = _marks(root, "g", "interval")
    assert len(intervals) == 2
    x0 = float(rects[0].get("x"))
    line = intervals[1].find(f"{SVG}line")
    assert float(line.get("x1")) - x0 == pytest.approx(widths[1] * 0.17 / 0.20, abs=0.02)
    assert float(line.get("x2")) - x0 == pytest.approx(widths[1] * 0.23 / 0.20, abs=0.02)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"Control", "Variant 1", "Variant 2", "10.0%", "20.0%", "5.0%"} <= set(texts)


def test_bar_chart_marks_missing_values_and_escapes_labels() -> None:
    root = _parse(bar_chart([Bar("<b>&", 0.3), Bar("empty", None)], title="A & B"))
    assert root.get("aria-label") == "A & B"
    assert len(_marks(root, "rect", "bar")) == 1
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "<b>&" in texts and "no data" in texts


@pytest.mark.parametrize(
    "chart",
    [
        lambda: bar_chart([], title="Empty bars"),
        lambda: bar_chart([Bar("x", None)], title="Empty bars"),
        lambda: line_chart([], [], title="Empty bars"),
        lambda: line_chart([Series("s", [None, None])], ["a", "b"], title="Empty bars"),
        lambda: flow_chart([], title="Empty bars"),
        lambda: flow_chart([FlowLane("all", [FlowStage("a", 0)])], title="Empty bars"),
        lambda: calibration_plot([], title="Empty bars"),
    ],
)
def test_empty_data_gives_a_chart_that_says_so(chart) -> None:
    root = _parse(chart())
    _accessible(root, "Empty bars")
    assert "chart-empty" in root.get("class")
    assert [t.text for t in root.iter(f"{SVG}text")] == ["No data yet"]


def test_line_chart_points_follow_values_with_gaps_and_a_legend() -> None:
    series = [
        Series("Control", [0.1, 0.2, None, 0.4], attrs={"data-variant": 0}),
        Series("Variant 1", [0.3, 0.3, 0.3, 0.3]),
    ]
    root = _parse(line_chart(series, ["d1", "d2", "d3", "d4"], title="Cumulative", y_min=0.0, y_max=0.5))
    _accessible(root, "Cumulative")
    points = _marks(root, "circle", "point")
    assert len(points) == 7  # the None is a gap, not a point
    control = [p for p in points if p.get("data-series") == "Control"]
    assert [p.get("data-x") for p in control] == ["d1", "d2", "d4"]
    assert all(p.get("data-variant") == "0" for p in control)
    # y is linear in the value: equal steps in value are equal steps in pixels, higher is up.
    ys = [float(p.get("cy")) for p in control]
    assert ys[0] - ys[1] == pytest.approx((ys[1] - ys[2]) / 2)
    assert ys[0] > ys[1] > ys[2]
    # The gap splits Control's line in two runs; only runs of ≥ 2 points are drawn.
    control_group = next(g for g in root.iter(f"{SVG}g") if g.get("data-series") == "Control")
    assert len(control_group.findall(f"{SVG}polyline")) == 1
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "Control" in texts and "Variant 1" in texts and "d1" in texts


def test_flow_chart_bands_scale_with_visitors_and_drop_off_is_shown() -> None:
    lanes = [
        FlowLane("Control", [FlowStage("Find", 100, 60, ["NPS 10.0"]), FlowStage("Buy", 60)]),
        FlowLane("Variant 1", [FlowStage("Find", 50, 40), FlowStage("Buy", 45)]),
    ]
    root = _parse(flow_chart(lanes, title="Journey"))
    _accessible(root, "Journey")
    stages = _marks(root, "rect", "stage")
    heights = {(r.get("data-lane"), r.get("data-stage")): float(r.get("height")) for r in stages}
    assert heights[("Control", "Find")] == pytest.approx(2 * heights[("Variant 1", "Find")])
    assert heights[("Control", "Buy")] == pytest.approx(heights[("Control", "Find")] * 0.6)
    links = _marks(root, "path", "link")
    assert {(p.get("data-lane"), p.get("data-visitors")) for p in links} == {("Control", "60"), ("Variant 1", "40")}
    drops = {(p.get("data-lane"), p.get("data-drop")) for p in _marks(root, "path", "drop")}
    assert drops == {("Control", "40"), ("Variant 1", "10")}
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "NPS 10.0" in texts and "Find" in texts and "100 visitors" in texts


def test_calibration_plot_places_bins_on_the_unit_square() -> None:
    root = _parse(calibration_plot([(0.1, 0.12, 50), (0.5, 0.45, 200), (0.9, 0.95, 50)], title="Calibration"))
    _accessible(root, "Calibration")
    bins = _marks(root, "circle", "bin")
    assert [b.get("data-count") for b in bins] == ["50", "200", "50"]
    xs = [float(b.get("cx")) for b in bins]
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1])  # 0.1 → 0.5 → 0.9: equal steps
    radii = [float(b.get("r")) for b in bins]
    assert radii[1] > radii[0] == radii[2]  # area grows with the rows in the bin
    assert _marks(root, "line", "diagonal")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "predicted" in texts and "observed" in texts


def test_tile_escapes_and_lists_metrics() -> None:
    html = str(tile("checkout <tp>", [("Task success", "80%"), ("SUS", "72.5 (n 10)")]))
    assert "<h3>checkout &lt;tp&gt;</h3>" in html
    assert re.search(r"<dt>Task success</dt><dd>80%</dd>", html)
    assert "none yet" in str(tile("empty", []))
    lines = str(tile("home", [("NPS", ["Control: 10", "Variant 1: <20>"])]))
    assert '<dd><span class="line">Control: 10</span><span class="line">Variant 1: &lt;20&gt;</span></dd>' in lines


def test_percent_formats_and_handles_missing() -> None:
    assert percent(0.1234) == "12.3%" and percent(None) == "–" and percent(0.5, 0) == "50%"
