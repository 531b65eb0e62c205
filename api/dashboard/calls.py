"""The dashboard's calls on variants — "Variant 1 wins", "Variant 2 is worse", "no difference yet".

A call is made from the *sequential* (always-valid) interval of the uplift only
(:func:`~personalization.measurement.sequential.sequential_rates`, ``sequential_interval`` of each
variant's results): a marketer who opens the page every morning, and stops when it looks good, is
not fooled by peeking. The fixed-horizon interval and the chance to beat control stay on the page
as numbers, but they never decide a call, and the experiences list no longer ranks variants by
chance to beat control alone.
"""

from __future__ import annotations

from personalization.measurement.results_goals import GoalResult, VariantResult

__all__ = ["CALLS_NOTE", "NOT_ENOUGH", "goal_call", "variant_call"]

#: What the dashboard says while a variant cannot be compared (an empty arm, no variation yet).
NOT_ENOUGH = "not enough data yet"
#: The line every page with calls shows.
CALLS_NOTE = ("Calls use always-valid (sequential) intervals: a variant wins or is worse only when its interval "
              "excludes no difference, so they stay true however often you look.")


def _label(variant: int) -> str:
    return f"Variant {variant}"


def variant_call(v: VariantResult) -> str:
    """The call on one variant against control; control itself gets none (``""``)."""
    if v.variant == 0:
        return ""
    if v.sequential_interval is None:
        return NOT_ENOUGH
    low, high = v.sequential_interval
    if low > 0:
        return f"{_label(v.variant)} wins"
    if high < 0:
        return f"{_label(v.variant)} is worse"
    return "no difference yet"


def goal_call(goal: GoalResult | None) -> str | None:
    """The experiences list's line for the first goal: the winner with the highest lower bound, else
    the worst loser, else "no difference yet"; ``None`` when no variant can be compared yet."""
    if goal is None:
        return None
    compared = [v for v in goal.variants[1:] if v.sequential_interval is not None]
    if not compared:
        return None
    winners = [v for v in compared if v.sequential_interval is not None and v.sequential_interval[0] > 0]
    if winners:
        return variant_call(max(winners, key=lambda v: v.sequential_interval[0] if v.sequential_interval else 0.0))
    losers = [v for v in compared if v.sequential_interval is not None and v.sequential_interval[1] < 0]
    if losers:
        return variant_call(min(losers, key=lambda v: v.sequential_interval[1] if v.sequential_interval else 0.0))
    return "no difference yet"
