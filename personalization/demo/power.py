"""How big the demo's planted personalization lift and holdout must be for the results to find it.

A demo that plants an effect its own results cannot see teaches that measurement does not work. So
the ``hero-sale`` holdout share and the lift ``vary simulate`` plants are chosen by a power
calculation, not by trying seeds until an interval excludes zero (docs/measurement.md, "The demo's
personalization lift: a power calculation", has the numbers).

The test is the one the results run (:func:`personalization.measurement.stats.relative_uplift`):
lift u = p̂_t/p̂_h − 1 with the delta-method standard error

    se² = var_t/p_h² + p_t²·var_h/p_h⁴ = (1+u)²·((1−p_t)/(n_t·p_t) + (1−p_h)/(n_h·p_h)),

var = p(1−p)/n, evaluated at the true rates p_h and p_t = p_h·(1+u). Its 95 % interval u ± z·se
excludes 0 when |û|/se > z_{1−α/2}, so the power is Φ(u/se − z) + Φ(−u/se − z), and the audience
visitors needed for a power π are N = (z_{1−α/2} + z_π)²·(1+u)²·(a/(1−h) + b/h)/u² with
a = (1−p_t)/p_t, b = (1−p_h)/p_h and h the holdout share — the textbook normal approximation
(:func:`approximate_power`, :func:`approximate_visitors_needed`). For a lift as large as a demo needs it is
far off (0.70 where the truth is 0.85): ŝe is estimated from the same counts as û and grows with it,
so û/ŝe is bounded by 1/√(A+B) and much less spread than N(u/se, 1). :func:`lift_power` is therefore
exact — the interval the results report, evaluated for every pair of converter counts and weighted by
their binomial probabilities — and the design uses it. Pure functions; no Redis, no randomness.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom, norm

from personalization.measurement.sequential import SEQUENTIAL_TUNING_PARAMETER, sequential_halfwidth

__all__ = [
    "lift_standard_error",
    "approximate_power",
    "approximate_visitors_needed",
    "lift_power",
    "sequential_lift_power",
    "visitors_needed",
    "interval_halfwidth",
    "best_holdout_share",
    "DEMO_HOLDOUT_SHARE",
    "DEMO_PERSONALIZATION_LIFT",
    "DEMO_GLOBAL_HOLDOUT",
]


def _check(p_holdout: float, lift: float, holdout_share: float) -> None:
    if not 0.0 < p_holdout < 1.0:
        raise ValueError(f"p_holdout must be in (0, 1), got {p_holdout}")
    if lift <= -1.0 or not 0.0 < p_holdout * (1.0 + lift) < 1.0:
        raise ValueError(f"lift must keep the treated rate in (0, 1), got {lift}")
    if not 0.0 < holdout_share < 1.0:
        raise ValueError(f"holdout_share must be in (0, 1), got {holdout_share}")


def _unit_variances(p_holdout: float, lift: float) -> tuple[float, float]:
    """(a, b): per-visitor variance terms of the treated and holdout arms in se² of the relative lift."""
    p_treated = p_holdout * (1.0 + lift)
    scale = (1.0 + lift) ** 2
    return scale * (1.0 - p_treated) / p_treated, scale * (1.0 - p_holdout) / p_holdout


def lift_standard_error(p_holdout: float, lift: float, visitors: float, holdout_share: float) -> float:
    """Delta-method se of û = p̂_t/p̂_h − 1 with ``visitors`` in the audience, ``holdout_share`` of them held out."""
    _check(p_holdout, lift, holdout_share)
    if visitors <= 0:
        raise ValueError(f"visitors must be > 0, got {visitors}")
    a, b = _unit_variances(p_holdout, lift)
    return math.sqrt(a / ((1.0 - holdout_share) * visitors) + b / (holdout_share * visitors))


def approximate_power(
    p_holdout: float, lift: float, visitors: float, holdout_share: float, alpha: float = 0.05
) -> float:
    """The textbook normal approximation Φ(u/se − z) + Φ(−u/se − z), se at the true rates.

    Conservative for the demo's large lift: the interval's se is estimated from the same counts as û
    and grows with it, so |û|/ŝe is less spread than N(u/se, 1) (:func:`lift_power` is exact)."""
    if lift == 0.0:
        return alpha
    z = norm.ppf(1.0 - alpha / 2.0)
    shift = lift / lift_standard_error(p_holdout, lift, visitors, holdout_share)
    return float(norm.cdf(shift - z) + norm.cdf(-shift - z))


def approximate_visitors_needed(
    p_holdout: float, lift: float, holdout_share: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Audience visitors for ``power`` by the normal approximation (:func:`approximate_power`)."""
    _check(p_holdout, lift, holdout_share)
    if lift == 0.0:
        raise ValueError("a lift of 0 cannot be detected")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    a, b = _unit_variances(p_holdout, lift)
    z = norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)
    return math.ceil(z * z * (a / (1.0 - holdout_share) + b / holdout_share) / (lift * lift))


def _arm_range(n: int, p: float) -> np.ndarray:
    """The converter counts of an arm that carry all but ~1e-12 of its binomial probability."""
    low, high = binom.ppf(1e-13, n, p), binom.isf(1e-13, n, p)
    return np.arange(int(low), int(high) + 1)


def lift_power(p_holdout: float, lift: float, visitors: float, holdout_share: float, alpha: float = 0.05) -> float:
    """P(the results' 1−α interval of the lift excludes 0), exactly: summed over both arms' binomials.

    n_h = round(h·N) holdout visitors, the rest treated; for every pair of converter counts the
    interval is the one :func:`~personalization.measurement.stats.relative_uplift` reports
    (û ± z·ŝe, ŝe from the observed rates; no interval when the holdout has no converter).
    """
    return _exact_power(p_holdout, lift, visitors, holdout_share, float(norm.ppf(1.0 - alpha / 2.0)))


def sequential_lift_power(
    p_holdout: float, lift: float, visitors: float, holdout_share: float, alpha: float = 0.05,
    sequential_tuning_parameter: float = SEQUENTIAL_TUNING_PARAMETER,
) -> float:
    """P(the always-valid interval the dashboard's call uses excludes 0), looked at after ``visitors``.

    Its half-width is the confidence sequence's B = k(N)·ŝe
    (:func:`~personalization.measurement.sequential.sequential_halfwidth`; k depends on N and the tuning
    only) instead of z·ŝe, so the same lift needs more visitors: the price of being allowed to peek.
    """
    n = round(visitors)
    k = sequential_halfwidth(1.0, n, alpha=alpha, sequential_tuning_parameter=sequential_tuning_parameter)
    return _exact_power(p_holdout, lift, visitors, holdout_share, k)


def _exact_power(p_holdout: float, lift: float, visitors: float, holdout_share: float, multiplier: float) -> float:
    """P(|û| > multiplier·ŝe) over both arms' binomial converter counts."""
    _check(p_holdout, lift, holdout_share)
    n_h = round(holdout_share * visitors)
    n_t = round(visitors) - n_h
    if n_h < 1 or n_t < 1:
        raise ValueError(f"both arms need visitors: {visitors} visitors, holdout share {holdout_share}")
    p_t = p_holdout * (1.0 + lift)
    x_h, x_t = _arm_range(n_h, p_holdout), _arm_range(n_t, p_t)
    x_h = x_h[x_h > 0]
    mu_c, mu_t = (x_h / n_h)[:, None], (x_t / n_t)[None, :]
    var_c, var_t = mu_c * (1.0 - mu_c) / n_h, mu_t * (1.0 - mu_t) / n_t
    estimate = mu_t / mu_c - 1.0
    se = np.sqrt(var_t / mu_c**2 + mu_t**2 * var_c / mu_c**4)
    excluded = np.abs(estimate) > multiplier * se
    weights = binom.pmf(x_h, n_h, p_holdout)[:, None] * binom.pmf(x_t, n_t, p_t)[None, :]
    return float(np.sum(weights * excluded))


def visitors_needed(
    p_holdout: float, lift: float, holdout_share: float, alpha: float = 0.05, power: float = 0.8,
    *, always_valid: bool = False,
) -> int:
    """Fewest audience visitors (treated + holdout) for :func:`lift_power` ≥ ``power``, by bisection
    (``always_valid``: for :func:`sequential_lift_power`, the dashboard's call).

    Exact power rises with N up to the saw-tooth of discrete counts (a few visitors wide), so the
    answer is the bisection's: the power there reaches ``power``.
    """
    test = sequential_lift_power if always_valid else lift_power
    high = (8 if always_valid else 2) * approximate_visitors_needed(p_holdout, lift, holdout_share, alpha, power) + 10
    low = 2
    while high - low > 1:
        middle = (low + high) // 2
        if test(p_holdout, lift, middle, holdout_share, alpha) >= power:
            high = middle
        else:
            low = middle
    return high


def interval_halfwidth(
    p_holdout: float, lift: float, visitors: float, holdout_share: float, alpha: float = 0.05
) -> float:
    """Expected half-width z·se of the lift's 1−α interval (the interval is û ± this)."""
    return float(norm.ppf(1.0 - alpha / 2.0)) * lift_standard_error(p_holdout, lift, visitors, holdout_share)


def best_holdout_share(p_holdout: float, lift: float) -> float:
    """The share minimising se for a fixed audience: h = √b/(√a + √b) (Neyman allocation)."""
    _check(p_holdout, lift, 0.5)
    a, b = _unit_variances(p_holdout, lift)
    return math.sqrt(b) / (math.sqrt(a) + math.sqrt(b))


#: The demo's design (docs/measurement.md, "The demo's personalization lift: a power calculation"):
#: hero-sale's holdout share in content/demo/space.json and the lift ``vary simulate`` plants.
DEMO_HOLDOUT_SHARE = 0.3
DEMO_PERSONALIZATION_LIFT = 0.7
#: The demo space's global holdout (its ``varySettings`` entry): those visitors never reach hero-sale,
#: so its audience shrinks by this share; at 5 % the design above keeps ≥ 80 % power (0.82).
DEMO_GLOBAL_HOLDOUT = 0.05
