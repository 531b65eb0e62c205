"""The journey map page: the flow of visitors through a journey's stages, and every stage's numbers.

The map is :func:`~personalization.measurement.journeys.journey_map`'s, as ``GET /v1/journeys/{key}``
serves it; this module only draws it (:mod:`api.dashboard.charts`) and formats it for reading.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.dashboard.charts import FlowLane, FlowStage, flow_chart, percent
from api.dashboard.pages import fmt_ms, variant_label
from personalization.measurement.journey_report import JourneyMap, StageReport
from personalization.measurement.ux_cx import MetricEstimate

__all__ = ["journey_view"]


def _stage_notes(stage: StageReport) -> list[str]:
    notes = []
    if stage.drop_off is not None and stage.drop_off.score is not None:
        notes.append(f"drop-off {percent(stage.drop_off.score, 0)}")
    if stage.ux.task_success.score is not None:
        notes.append(f"task success {percent(stage.ux.task_success.score, 0)}")
    if stage.ux.click_through_rate.score is not None:
        notes.append(f"click-through {percent(stage.ux.click_through_rate.score, 0)}")
    if stage.ux.abandonment_rate.score is not None:
        notes.append(f"abandonment {percent(stage.ux.abandonment_rate.score, 0)}")
    for metric in ("nps", "csat", "ces"):
        m: MetricEstimate = getattr(stage.cx, metric)
        if m.score is not None:
            notes.append(f"{metric.upper()} {m.score:.1f}")
    return notes[:6]


def _group_order(name: str) -> tuple[int, str]:
    return (0, f"{int(name):06d}") if name.isdigit() else (1, name)


def journey_view(result: JourneyMap) -> dict[str, Any]:
    """The flow (one lane per variant, shared scale) and a table of every stage's numbers."""
    groups = sorted(result.variants, key=_group_order)
    lanes = []
    table = []
    for group in groups:
        vj = result.variants[group]
        label = variant_label(group) if result.experience else "All visitors"
        lanes.append(
            FlowLane(
                name=f"{label} ({vj.visitors:,} visitors)",
                stages=[FlowStage(s.name, s.reached, s.continued, _stage_notes(s)) for s in vj.stages],
            )
        )
        for s in vj.stages:
            table.append(
                {
                    "group": label,
                    "stage": s.name,
                    "reached": f"{s.reached:,}",
                    "drop_off": percent(s.drop_off.score, 1) if s.drop_off else "–",
                    "time_to_next": "–" if s.median_s_to_next is None else f"{s.median_s_to_next:,.0f} s",
                    "task_success": percent(s.ux.task_success.score, 0),
                    "click_through": percent(s.ux.click_through_rate.score, 0),
                    "abandonment": percent(s.ux.abandonment_rate.score, 0),
                    "median_task": fmt_ms(s.ux.median_task_ms),
                    "nps": "–" if s.cx.nps.score is None else f"{s.cx.nps.score:.1f}",
                    "csat": "–" if s.cx.csat.score is None else f"{s.cx.csat.score:.1f}",
                    "ces": "–" if s.cx.ces.score is None else f"{s.cx.ces.score:.2f}",
                }
            )
    title = f"Journey {result.name}: visitors and drop-off per stage" + (
        f", by variant of {result.experience}" if result.experience else ""
    )
    return {
        "flow": flow_chart(lanes, title=title),
        "table": table,
        "unexposed": f"{result.unexposed_visitors:,}",
        "truncated": result.truncated,
        "since": datetime.fromtimestamp(result.since, UTC).date().isoformat(),
        "until": datetime.fromtimestamp(result.until, UTC).date().isoformat(),
    }
