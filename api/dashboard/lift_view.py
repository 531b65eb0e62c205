"""The personalization lift as the dashboard shows it: the first answer to "is personalizing working?".

Numbers come from ``personalization_lift`` of the results (:mod:`personalization.measurement.results_lift`);
this module only formats them — ``+12 % [+3 %, +21 %] vs holdout`` — and words the call. The call
("personalization helps", "no difference yet") uses the *sequential* (always-valid) interval, so a
marketer who opens the page every morning is not fooled by peeking; the page says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from api.dashboard.charts import percent
from personalization.measurement.results import ExperimentResults
from personalization.measurement.results_lift import ArmRate, PersonalizationLift

__all__ = ["NOT_ENOUGH", "first_goal_lift", "fmt_lift", "lift_call", "lift_headline", "lift_rows"]

#: What the dashboard says while a lift cannot be computed (an empty arm, no holdout conversion yet).
NOT_ENOUGH = "not enough data yet"


def fmt_lift(value: float | None) -> str:
    """``0.123`` → ``+12 %``; ``None`` → ``–``."""
    return "–" if value is None else f"{value * 100:+.0f} %"


def _fmt_interval(interval: Sequence[float] | None) -> str:
    return "" if interval is None else f"[{fmt_lift(interval[0])}, {fmt_lift(interval[1])}]"


def lift_headline(lift: PersonalizationLift | None) -> str:
    """``+12 % [+3 %, +21 %] vs holdout`` (fixed-horizon 95 % interval), or :data:`NOT_ENOUGH`."""
    if lift is None or lift.lift is None or lift.lift_interval is None:
        return NOT_ENOUGH
    return f"{fmt_lift(lift.lift)} {_fmt_interval(lift.lift_interval)} vs holdout"


def lift_call(lift: PersonalizationLift | None) -> str:
    """The verdict, from the always-valid interval only: safe however often the page is opened."""
    if lift is None or lift.sequential_interval is None:
        return NOT_ENOUGH
    low, high = lift.sequential_interval
    if low > 0:
        return "personalization helps"
    if high < 0:
        return "personalization hurts"
    return "no difference yet"


def _arm(arm: ArmRate) -> dict[str, str]:
    return {
        "visitors": f"{arm.visitors:,}",
        "conversions": f"{arm.conversions:,}",
        "rate": percent(arm.rate, 2),
        "interval": "" if arm.interval is None else f"[{percent(arm.interval[0], 2)} – {percent(arm.interval[1], 2)}]",
    }


def lift_rows(results: ExperimentResults, fmt_p: Callable[[float | None], str]) -> list[dict[str, Any]]:
    """One row per goal for the lift table at the top of the experience page (``fmt_p`` formats p-values)."""
    rows = []
    for goal, lift in results.personalization_lift.items():
        rows.append(
            {
                "goal": goal,
                "headline": lift_headline(lift),
                "call": lift_call(lift),
                "sequential_interval": _fmt_interval(lift.sequential_interval) or "–",
                "p_value": fmt_p(lift.p_value),
                "chance": percent(lift.chance_to_beat_holdout, 1),
                "treated": _arm(lift.treated),
                "holdout": _arm(lift.holdout),
                "lift": "" if lift.lift is None else repr(lift.lift),
            }
        )
    return rows


def first_goal_lift(results: ExperimentResults) -> tuple[str | None, str | None]:
    """(goal, headline) of the first goal's lift for the experiences list; ``(None, None)`` without a holdout."""
    goal = next(iter(results.personalization_lift), None)
    if goal is None:
        return None, None
    return goal, lift_headline(results.personalization_lift[goal])
