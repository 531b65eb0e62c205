"""Regression adjustment of conversion rates (CUPED, CUPAC): a covariate known before exposure narrows the interval.

CUPED (Deng, Xu, Kohavi & Walker, "Improving the sensitivity of online controlled experiments by
utilizing pre-experiment data", WSDM 2013) replaces each visitor's outcome Y (converted, 0/1) by
Y' = Y − θ·(X − X̄) with X a covariate fixed before the visitor saw a variant and θ = Cov(X, Y)/Var(X)
pooled over the arms (:func:`~personalization.measurement.stats.cuped_adjust`, GrowthBook's regression
adjustment). Because X is independent of the assignment, E[Y'] per arm differs from E[Y] by the same
θ·(E[X] − X̄) ≈ 0 in every arm, so the difference of means stays unbiased while its variance shrinks by
about ρ²(X, Y). CUPAC (Tang et al., DoorDash 2020) is the same with X a *prediction* of Y made before
exposure — here the conversion rate of the visitor's segment (:mod:`~personalization.measurement.cupac`).

Per variant against control (arm 0): the adjusted rates, their difference d = ȳ'_t − ȳ'_c with
se² = s'²_t/n_t + s'²_c/n_c and a normal interval and two-sided p-value; the relative uplift
ȳ'_t/ȳ'_c − 1 by the delta method (as :func:`~personalization.measurement.stats.relative_uplift`); and
``variance_reduction`` = 1 − se²(adjusted)/se²(unadjusted) of the difference (of the arm's mean for
control). The estimation error of θ is ignored, as in GrowthBook and Statsig (negligible at the
sample sizes where a verdict is possible).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta, Struct
from scipy import stats

from personalization.measurement.stats import Z95, CupedSums, cuped_adjust

__all__ = ["AdjustedRate", "adjust_rates"]

Interval = tuple[float, float]


class AdjustedRate(Struct, frozen=True, kw_only=True):
    """One arm's conversion rate after regression adjustment, and (variants) its comparison with control.

    ``theta`` is pooled over the arms; ``rate`` the adjusted rate; ``difference`` (absolute, rate points)
    and ``uplift`` (relative) with 95 % intervals and ``p_value``; ``variance_reduction`` is
    1 − Var(adjusted)/Var(unadjusted) of the difference (of the arm's rate for control). Comparisons
    are ``None`` for control and when undefined (no spread, a zero control rate).
    """

    theta: Annotated[float, Meta(description="The adjustment coefficient θ, pooled over the arms.")]
    rate: Annotated[float, Meta(description="The adjusted conversion rate.")]
    variance_reduction: (
        Annotated[float, Meta(description="1 − Var(adjusted)/Var(raw): how much tighter the adjustment made it.")]
        | None
    )
    difference: (
        Annotated[float, Meta(description="Absolute difference vs control, in rate points (variants only).")] | None
    ) = None
    difference_interval: Annotated[Interval, Meta(description="95 % interval of `difference`.")] | None = None
    uplift: Annotated[float, Meta(description="Relative uplift vs control.")] | None = None
    uplift_interval: Annotated[Interval, Meta(description="95 % interval of `uplift`.")] | None = None
    p_value: Annotated[float, Meta(description="p-value of the difference.")] | None = None


def _reduction(adjusted: float, raw: float) -> float | None:
    return 1.0 - adjusted / raw if raw > 0.0 else None


def adjust_rates(arms: Sequence[CupedSums | None]) -> list[AdjustedRate | None]:
    """Adjust every arm with sums (``None``: no visitors to adjust, or fewer than 2) with θ pooled over them;
    arm 0 is control. Returns one entry per input arm, ``None`` where the input was."""
    present = [(i, a) for i, a in enumerate(arms) if a is not None and a.n >= 2]
    out: list[AdjustedRate | None] = [None] * len(arms)
    if not present:
        return out
    result = cuped_adjust([a for _, a in present])
    adjusted = dict(zip((i for i, _ in present), result.arms, strict=True))
    control = adjusted.get(0)
    for i, arm in adjusted.items():
        if i == 0 or control is None:
            out[i] = AdjustedRate(
                theta=result.theta, rate=arm.mean,
                variance_reduction=_reduction(arm.variance, arm.unadjusted_variance),
            )
            continue
        se2 = arm.variance / arm.n + control.variance / control.n
        raw2 = arm.unadjusted_variance / arm.n + control.unadjusted_variance / control.n
        diff = arm.mean - control.mean
        se = math.sqrt(se2)
        uplift = uplift_interval = None
        if control.mean > 0.0:
            uplift = arm.mean / control.mean - 1.0
            u_se = math.sqrt(
                arm.variance / (arm.n * control.mean**2) + arm.mean**2 * control.variance / (control.n * control.mean**4)
            )
            uplift_interval = (uplift - Z95 * u_se, uplift + Z95 * u_se)
        out[i] = AdjustedRate(
            theta=result.theta,
            rate=arm.mean,
            variance_reduction=_reduction(se2, raw2),
            difference=diff,
            difference_interval=(diff - Z95 * se, diff + Z95 * se) if se > 0.0 else None,
            uplift=uplift,
            uplift_interval=uplift_interval,
            p_value=float(2.0 * stats.norm.sf(abs(diff) / se)) if se > 0.0 else None,
        )
    return out
