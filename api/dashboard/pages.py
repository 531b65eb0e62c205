"""What each dashboard page shows, shaped from the domain results for the templates.

Nothing here measures or decides: the numbers come from the functions the JSON admin API serves
(:func:`~personalization.measurement.results.experiment_results`, :func:`~personalization.measurement.cx.journey_metrics`).
This module only picks which of them a page shows, formats them for reading (``12.3% [10.1–14.6%]``) and turns them into charts
(:mod:`api.dashboard.charts`). Cumulative rates are running sums of the daily counts the results
already hold, divided for display. The personalization lift (shown first for a personalization)
is worded by :mod:`api.dashboard.lift_view`; calls on variants ("Variant 1 wins") by
:mod:`api.dashboard.calls`, from the always-valid intervals only; guardrail pauses and the phase history
by :mod:`api.dashboard.guardrail_view`. The journey map page is :mod:`api.dashboard.journey_page`, the
models page :mod:`api.dashboard.model_page`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from markupsafe import Markup

from api.dashboard.calls import CALLS_NOTE, goal_call, variant_call
from api.dashboard.charts import (
    Bar,
    Series,
    bar_chart,
    line_chart,
    percent,
    tile,
)
from api.dashboard.guardrail_view import pause_banners, phase_rows
from api.dashboard.lift_view import first_goal_lift, lift_rows
from personalization.measurement.cx import CxReport
from personalization.measurement.guardrails import experience_status
from personalization.measurement.results import ExperimentResults
from personalization.measurement.results_goals import GoalResult
from personalization.measurement.results_ux import UxVariant
from personalization.measurement.stats import enough_data
from personalization.measurement.ux_cx import MetricEstimate
from personalization.store.phases import Phase
from personalization.types import Experience

__all__ = [
    "cx_charts",
    "experience_detail",
    "experience_row",
    "fmt_interval",
    "fmt_ms",
    "fmt_p",
    "fmt_uplift",
    "ux_tiles",
    "variant_label",
]


# ------------------------------------------------------------------------------------------ formatting


def fmt_interval(interval: Sequence[float] | None, fmt: Any = percent) -> str:
    return "" if interval is None else f"[{fmt(interval[0])} – {fmt(interval[1])}]"


def fmt_uplift(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}%"


def fmt_p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _score(m: MetricEstimate, fmt: Any = lambda v: f"{v:.1f}") -> str:
    return "–" if m.score is None else f"{fmt(m.score)} (n {m.n:,})"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def variant_label(v: int | str) -> str:
    """``0`` → Control, ``2`` → Variant 2; other group names (``holdout``, ``all``) capitalised."""
    text = str(v)
    if text == "0":
        return "Control"
    if text.isdigit():
        return f"Variant {text}"
    return text.capitalize()


# ------------------------------------------------------------------------------------------ experiences


def _days_running(results: ExperimentResults, now: float) -> int:
    """Days from the first day with exposures to today, both included (0 before any traffic)."""
    if not results.daily:
        return 0
    first = date.fromisoformat(min(results.daily))
    today = datetime.fromtimestamp(now, UTC).date()
    return max((today - first).days + 1, 1)


def layer_label(experience: Experience) -> str | None:
    """``homepage: 0%–50%`` — the mutually exclusive layer and the experience's share of it."""
    if experience.layer is None:
        return None
    if experience.layer_range is None:
        return f"{experience.layer}: no share"
    start, end = experience.layer_range
    return f"{experience.layer}: {percent(start, 0)}–{percent(end, 0)}"


def frequency_cap_label(experience: Experience) -> str | None:
    """``at most 3 exposures per person per day`` — the experience's frequency cap, if it has one."""
    cap = experience.frequency_cap
    if cap is None:
        return None
    noun = "exposure" if cap.max_exposures == 1 else "exposures"
    per = "over the campaign" if cap.period == "campaign" else f"per {cap.period}"
    return f"at most {cap.max_exposures} {noun} per person {per}"


def experience_row(
    experience: Experience, results: ExperimentResults, now: float, paused: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """One line of the experiences list; the personalization lift (first goal) leads it. ``paused``:
    variant → reason of the guardrail pauses in the current phase."""
    first_goal = next(iter(results.goals), None)
    lift_goal, lift = first_goal_lift(results)
    return {
        "lift": lift,
        "lift_goal": lift_goal,
        "notes": list(results.notes),
        "key": experience.key,
        "name": experience.name,
        "type": experience.type,
        "status": experience_status(experience, paused or {}, now),
        "audience": experience.audience.name if experience.audience else "Everyone",
        "traffic": percent(experience.traffic_allocation, 0),
        "layer": layer_label(experience),
        "exposures": f"{sum(results.exposures):,}",
        "days": _days_running(results, now),
        "srm_flag": results.srm_flag,
        "srm_p": fmt_p(results.srm_p_value),
        "goal": first_goal,
        "call": goal_call(results.goals.get(first_goal) if first_goal else None),
    }


def _variant_rows(experience: Experience, goal: GoalResult) -> list[dict[str, Any]]:
    rows = []
    for v in goal.variants:
        rows.append(
            {
                "variant": v.variant,
                "label": variant_label(v.variant),
                "entry": "baseline" if v.variant == 0 else experience.variants[v.variant - 1],
                "empty": v.visitors == 0,
                "exposures": f"{v.visitors:,}",
                "conversions": f"{v.conversions:,}",
                "rate": percent(v.rate, 2),
                "rate_interval": fmt_interval(v.interval, lambda x: percent(x, 2)),
                "uplift": fmt_uplift(v.uplift),
                "uplift_interval": fmt_interval(v.uplift_interval, fmt_uplift),
                "p_value": fmt_p(v.p_value),
                "chance": percent(v.chance_to_beat_control, 1),
                "sequential_interval": fmt_interval(v.sequential_interval, fmt_uplift),
                "call": variant_call(v),
                "enough_data": v.enough_data,
            }
        )
    return rows


def _rate_chart(experience: Experience, goal_name: str, goal: GoalResult) -> Markup:
    bars = [
        Bar(
            label=variant_label(v.variant),
            value=v.rate,
            low=v.interval[0] if v.interval else None,
            high=v.interval[1] if v.interval else None,
            attrs={
                "data-goal": goal_name,
                "data-variant": v.variant,
                "data-rate": "" if v.rate is None else repr(v.rate),
                "data-exposures": v.exposures,
                "data-conversions": v.conversions,
            },
        )
        for v in goal.variants
    ]
    return bar_chart(bars, title=f"{experience.name}: {goal_name} conversion rate per variant, 95% intervals")


def _cumulative_chart(experience: Experience, goal_name: str, results: ExperimentResults) -> Markup:
    days = sorted(results.daily)
    k = len(experience.variants) + 1
    visitors = [0] * k
    converters = [0] * k
    series_values: list[list[float | None]] = [[] for _ in range(k)]
    for day in days:
        counts = results.daily[day]
        day_conv = counts.converters.get(goal_name, [0] * k)
        for v in range(k):
            visitors[v] += counts.visitors[v] if v < len(counts.visitors) else 0
            converters[v] += day_conv[v] if v < len(day_conv) else 0
            series_values[v].append(converters[v] / visitors[v] if visitors[v] else None)
    series = [
        Series(name=variant_label(v), values=series_values[v], attrs={"data-variant": v, "data-goal": goal_name})
        for v in range(k)
    ]
    return line_chart(
        series, [d[5:] for d in days], title=f"{experience.name}: cumulative {goal_name} conversion rate by day"
    )


def _breakdown(results: ExperimentResults, goal_name: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for dimension in ("channel", "segment"):
        rows = []
        for name in sorted(results.breakdowns.get(dimension, {})):
            goal = results.breakdowns[dimension][name].get(goal_name)
            if goal is None:
                continue
            for v in goal.variants:
                rows.append(
                    {
                        "group": name,
                        "label": variant_label(v.variant),
                        "exposures": f"{v.exposures:,}",
                        "conversions": f"{v.conversions:,}",
                        "rate": percent(v.rate, 2),
                        "rate_interval": fmt_interval(v.interval, lambda x: percent(x, 2)),
                        "uplift": fmt_uplift(v.uplift),
                        "adjusted_p": "–" if v.adjusted_p_value is None else f"{v.adjusted_p_value:.3f}",
                        "chance": percent(v.chance_to_beat_control, 1),
                    }
                )
        out[dimension] = rows
    return out


#: What each ``discarded`` reason of the results means, as the experience page says it.
DISCARD_REASONS = {
    "goal": "Conversions of goals this experience does not count",
    "rate": "Conversions and purchases beyond the per-visitor limit per minute",
    "survey_repeat": "Repeated survey answers (one per metric, visitor and day counts)",
}


def _enough_data(experience: Experience, results: ExperimentResults) -> bool:
    """Old enough to call: for a personalization, personalized and holdout (first goal); else every variant."""
    lift = next(iter(results.personalization_lift.values()), None)
    if experience.type != "personalization" or lift is None:
        return results.enough_data
    return all(enough_data(arm.visitors, arm.conversions) for arm in (lift.treated, lift.holdout))


def experience_detail(
    experience: Experience, results: ExperimentResults, now: float,
    paused: Mapping[int, str] | None = None, phases: Sequence[Phase] = (),
) -> dict[str, Any]:
    """Everything the one-experience page shows: pause banners, per goal a table and two charts,
    breakdowns, the phase history."""
    goals = []
    for name, goal in results.goals.items():
        goals.append(
            {
                "name": name,
                "rows": _variant_rows(experience, goal),
                "rate_chart": _rate_chart(experience, name, goal),
                "cumulative_chart": _cumulative_chart(experience, name, results),
                "breakdown": _breakdown(results, name),
            }
        )
    return {
        "summary": experience_row(experience, results, now, paused),
        "pauses": pause_banners(experience.key, paused or {}),
        "phases": phase_rows(phases),
        "calls_note": CALLS_NOTE,
        "lift": lift_rows(results, fmt_p),
        "lift_first": experience.type == "personalization",
        "notes": list(results.notes),
        "breakdowns_warning": results.breakdowns_warning,
        "weights": ", ".join(f"{variant_label(i)} {percent(w, 0)}" for i, w in enumerate(experience.weights)),
        "holdout": percent(experience.holdout, 0),
        "frequency_cap": frequency_cap_label(experience),
        "ninetailed": experience.bucketing == "ninetailed",
        "goals_configured": ", ".join(experience.goals) or "none",
        "visitors": [
            {"label": variant_label(v), "visitors": f"{n:,}", "exposures": f"{results.exposures[v]:,}"}
            for v, n in enumerate(results.visitors)
        ],
        "holdout_visitors": f"{results.holdout_visitors:,}",
        "enough_data": _enough_data(experience, results),
        "goals": goals,
        "discarded": [(DISCARD_REASONS.get(reason, reason), f"{n:,}") for reason, n in results.discarded.items()],
    }


# ------------------------------------------------------------------------------------------ UX and CX


def ux_tiles(results: ExperimentResults) -> list[Markup]:
    """One tile per touchpoint: task success, task time, abandonment, click-through, SUS per variant."""
    tiles = []
    for touchpoint in sorted(results.ux):
        by_variant: Mapping[int, UxVariant] = results.ux[touchpoint]

        def line(pick: Any, by_variant: Mapping[int, UxVariant] = by_variant) -> list[str]:
            return [f"{variant_label(v)}: {pick(ux)}" for v, ux in sorted(by_variant.items())]

        tiles.append(
            tile(
                touchpoint,
                [
                    ("Task success", line(lambda u: _score(u.task_success, lambda s: percent(s, 0)))),
                    ("Median task time", line(lambda u: fmt_ms(u.task_time.median))),
                    ("Abandonment", line(lambda u: _score(u.abandonment_rate, lambda s: percent(s, 0)))),
                    ("Click-through", line(lambda u: _score(u.click_through_rate, lambda s: percent(s, 0)))),
                    ("SUS", line(lambda u: _score(u.sus))),
                ],
            )
        )
    return tiles


def cx_charts(overall: CxReport, weekly: Sequence[tuple[str, CxReport]]) -> dict[str, Any]:
    """NPS, CSAT, CES over weeks by channel; retention by cohort; top channel transitions."""
    weeks = [label for label, _ in weekly]
    channels = sorted({ch for _, report in weekly for ch in report.by_channel})
    specs = (
        ("nps", "NPS", -100.0, 100.0),
        ("csat", "CSAT (%)", 0.0, 100.0),
        ("ces", "CES (1–7)", 1.0, 7.0),
    )
    charts = {}
    for metric, name, lo, hi in specs:
        series = [
            Series(
                name="All channels",
                values=[getattr(r, metric).score for _, r in weekly],
                attrs={"data-metric": metric, "data-channel": "all"},
            )
        ]
        for ch in channels:
            values = [
                getattr(r.by_channel[ch], metric).score if ch in r.by_channel else None for _, r in weekly
            ]
            series.append(Series(name=ch, values=values, attrs={"data-metric": metric, "data-channel": ch}))
        charts[metric] = line_chart(
            series, weeks, title=f"{name} by week and channel", fmt=lambda v: f"{v:.1f}", y_min=lo, y_max=hi
        )
    cohorts = list(overall.retention.cohorts.items())[-8:]
    longest = max((len(shares) for _, shares in cohorts), default=0)
    retention = line_chart(
        [
            Series(name=f"{label} ({overall.retention.sizes.get(label, 0):,})", values=list(shares),
                   attrs={"data-cohort": label})
            for label, shares in cohorts
        ],
        [f"week {k}" for k in range(longest)],
        title="Retention by weekly cohort: share still active k weeks later",
        y_min=0.0,
        y_max=1.0,
    )
    transitions = bar_chart(
        [
            Bar(label=f"{t.from_} → {t.to}", value=float(t.count), attrs={"data-from": t.from_, "data-to": t.to})
            for t in overall.channel_switching.transitions
        ],
        title="Top channel transitions (consecutive events of one visitor)",
        fmt=_count,
    )
    summary = [
        ("NPS", _score(overall.nps)),
        ("CSAT", _score(overall.csat, lambda s: f"{s:.1f}%")),
        ("CES", _score(overall.ces, lambda s: f"{s:.2f}")),
        ("Repeat purchase", _score(overall.repeat_purchase_rate, lambda s: percent(s, 1))),
        ("Multi-channel visitors", _score(overall.channel_switching.share, lambda s: percent(s, 1))),
    ]
    return {
        "nps": charts["nps"],
        "csat": charts["csat"],
        "ces": charts["ces"],
        "retention": retention,
        "transitions": transitions,
        "summary": tile("Journey-wide CX", summary),
        "period": overall.period,
    }
