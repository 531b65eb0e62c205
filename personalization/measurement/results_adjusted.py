"""Variance-reduced conversion rates in the results: CUPED on pre-exposure conversions, CUPAC on the segment.

Each goal's variant rows gain two blocks next to the unadjusted numbers (which stay as they are):

* ``cuped`` — X = the visitor's conversions of that goal *before* their first exposure, from the
  per-arm sums the aggregator keeps in the ``all`` hash: ``<v>:xcsum:<goal>`` (ΣX), ``<v>:xcsumsq:<goal>``
  (ΣX²) and ``<v>:xcysum:<goal>`` (ΣXY; Y is converted 0/1, so ΣY = ΣY² = the arm's converters).
  Absent fields mean no visitor had history: then there is nothing to adjust and ``cuped`` is ``None``.
* ``cupac`` — X = the conversion rate of the visitor's segment (:mod:`~personalization.measurement.cupac`),
  from the ``seg:<segment>`` hashes; ``None`` with fewer than two segments (a constant covariate).

Both go through :func:`~personalization.measurement.regression_adjustment.adjust_rates`.
"""

from __future__ import annotations

from collections.abc import Mapping

from msgspec import structs

from personalization.measurement.cupac import segment_covariate_sums
from personalization.measurement.regression_adjustment import adjust_rates
from personalization.measurement.results_counts import Counts
from personalization.measurement.results_goals import GoalResult
from personalization.measurement.stats import CupedSums

__all__ = ["pre_exposure_sums", "with_covariates"]


def pre_exposure_sums(counts: Counts, k: int, goal: str) -> list[CupedSums | None] | None:
    """Per arm the CUPED sums of ``goal`` (X: conversions before first exposure); ``None`` without any."""
    if not counts.has(f"xcsum:{goal}"):
        return None
    arms: list[CupedSums | None] = []
    for v in range(k + 1):
        n = counts.count(v, "visitors")
        y = min(counts.count(v, f"conv:{goal}"), n)
        arms.append(
            CupedSums(
                n=n, sum_y=y, sum_y2=y,
                sum_x=counts.get(v, f"xcsum:{goal}"), sum_x2=counts.get(v, f"xcsumsq:{goal}"),
                sum_xy=counts.get(v, f"xcysum:{goal}"),
            )
            if n else None
        )
    return arms


def with_covariates(
    goals: Mapping[str, GoalResult], counts: Counts, segments: Mapping[str, Counts], k: int
) -> dict[str, GoalResult]:
    """``goals`` with ``cuped`` and ``cupac`` set on each variant row where they can be computed."""
    occupied = {name: c for name, c in segments.items() if any(c.count(v, "visitors") for v in range(k + 1))}
    out = {}
    for goal, result in goals.items():
        sums = pre_exposure_sums(counts, k, goal)
        cuped = adjust_rates(sums) if sums else [None] * (k + 1)
        cupac = adjust_rates(segment_covariate_sums(occupied, k, goal)) if len(occupied) > 1 else [None] * (k + 1)
        variants = [
            structs.replace(row, cuped=cuped[i], cupac=cupac[i]) if i < len(cuped) else row
            for i, row in enumerate(result.variants)
        ]
        out[goal] = GoalResult(variants=variants)
    return out
