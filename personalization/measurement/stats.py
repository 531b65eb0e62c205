"""Experiment statistics Vary reports: pure functions over counts and sums.

Aggregates are stored as counts and running sums (n, Σx, Σx², Σxy …), never as raw rows, so every
function here takes sufficient statistics. Formulas follow ``/work/shared/reference/statistics.md``;
the tests check each against scipy / statsmodels.

Conventions:

* Inputs are validated (``0 ≤ x ≤ n``, ``n ≥ 0``); nonsense raises :class:`ValueError`.
* Where a quantity is undefined (no data, zero variance, a zero baseline) the result is ``None``,
  never NaN or infinity, so the API can encode it as ``null``.
* Intervals are two-sided at 95 % by default (``Z95``).

Which estimator is used where:

* rates: Wilson score interval; variant vs control: pooled two-proportion z-test;
* relative uplift: delta method on the ratio of rates (GrowthBook's frequentist engine);
* chance to beat control: exact Beta-posterior sum (Evan Miller) while the smaller success count is
  at most :data:`EXACT_CTBC_MAX_SUCCESSES`, a Gaussian on the posterior difference beyond that;
* value metrics: Student-t interval for a mean, Welch's t-test for a difference, CUPED with a θ pooled
  over arms (GrowthBook's regression adjustment);
* sample-ratio mismatch: χ² goodness of fit against the configured weights, flagged below
  :data:`SRM_THRESHOLD`;
* NPS: Wald on the +1/0/−1 score, Rocks' adjusted Wald at small n or when every answer is the same
  (:func:`nps_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from msgspec import Struct
from scipy import special, stats

__all__ = [
    "Z95",
    "SRM_THRESHOLD",
    "SRM_MIN_PER_VARIANT",
    "EXACT_CTBC_MAX_SUCCESSES",
    "wilson_interval",
    "two_proportion_p_value",
    "relative_uplift",
    "chance_to_beat_control",
    "srm_p_value",
    "mean_interval",
    "welch_p_value",
    "CupedSums",
    "CupedArm",
    "CupedResult",
    "cuped_adjust",
    "enough_data",
    "RateComparison",
    "compare_rates",
    "NPS_WALD_MIN_N",
    "nps_interval",
]

#: Two-sided 95 % normal quantile, Φ⁻¹(0.975).
Z95 = 1.959964

#: Sample-ratio mismatch is flagged when the χ² p-value is below this (GrowthBook's default).
SRM_THRESHOLD = 0.001

#: GrowthBook skips the SRM check while any variant has fewer users than this.
SRM_MIN_PER_VARIANT = 8

#: Above this many successes in *both* arms chance-to-beat-control switches from the exact sum
#: (O(successes) Beta functions) to the Gaussian approximation, which is then accurate to ~1e-4.
EXACT_CTBC_MAX_SUCCESSES = 5_000


def _check_count(x: int, n: int, name: str = "") -> None:
    if n < 0:
        raise ValueError(f"{name}n must be >= 0, got {n}")
    if not 0 <= x <= n:
        raise ValueError(f"{name}successes must be between 0 and n={n}, got {x}")


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; good at small n and near 0 or 1, unlike Wald.

    centre = (p̂ + z²/2n) / (1 + z²/n), half-width = z·√(p̂(1−p̂)/n + z²/4n²) / (1 + z²/n).
    With no trials nothing is known: ``(0.0, 1.0)``.
    """
    _check_count(successes, n)
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_p_value(x_c: int, n_c: int, x_t: int, n_t: int) -> float | None:
    """Two-sided pooled z-test of treatment rate vs control rate.

    p = (x_c+x_t)/(n_c+n_t), se = √(p(1−p)(1/n_c+1/n_t)), z = (p̂_t−p̂_c)/se, p-value = 2(1−Φ(|z|)).
    ``None`` when an arm is empty or the pooled rate is 0 or 1 (se = 0: the test is undefined).
    """
    _check_count(x_c, n_c, "control ")
    _check_count(x_t, n_t, "treatment ")
    if n_c == 0 or n_t == 0:
        return None
    pooled = (x_c + x_t) / (n_c + n_t)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t))
    if se == 0.0:
        return None
    z = (x_t / n_t - x_c / n_c) / se
    return float(2.0 * stats.norm.sf(abs(z)))


def relative_uplift(
    x_c: int, n_c: int, x_t: int, n_t: int, z: float = Z95
) -> tuple[float | None, tuple[float, float] | None]:
    """Relative uplift u = p̂_t/p̂_c − 1 with a delta-method interval on the ratio.

    var(u) ≈ var_t/μ_c² + μ_t²·var_c/μ_c⁴ with var = p̂(1−p̂)/n (GrowthBook's frequentist engine).
    ``(None, None)`` when an arm is empty or the control rate is 0 (the ratio is undefined).
    """
    _check_count(x_c, n_c, "control ")
    _check_count(x_t, n_t, "treatment ")
    if n_c == 0 or n_t == 0 or x_c == 0:
        return (None, None)
    mu_c, mu_t = x_c / n_c, x_t / n_t
    var_c = mu_c * (1.0 - mu_c) / n_c
    var_t = mu_t * (1.0 - mu_t) / n_t
    uplift = mu_t / mu_c - 1.0
    se = math.sqrt(var_t / mu_c**2 + mu_t**2 * var_c / mu_c**4)
    return (uplift, (uplift - z * se, uplift + z * se))


def _ctbc_exact(a_b: float, b_b: float, a_a: float, b_a: float) -> float:
    """P(p_B > p_A) for p_B ~ Beta(a_b, b_b), p_A ~ Beta(a_a, b_a), integer a_b (Evan Miller).

    Σ_{i=0}^{a_b−1} B(a_a+i, b_a+b_b) / ((b_b+i)·B(1+i, b_b)·B(a_a, b_a)), summed in log space.
    """
    i = np.arange(int(a_b), dtype=np.float64)
    log_terms = (
        special.betaln(a_a + i, b_a + b_b)
        - np.log(b_b + i)
        - special.betaln(1.0 + i, b_b)
        - special.betaln(a_a, b_a)
    )
    return float(np.exp(special.logsumexp(log_terms)))


def chance_to_beat_control(x_c: int, n_c: int, x_t: int, n_t: int) -> float:
    """Posterior probability that the treatment rate beats control, P(p_t > p_c).

    Posteriors are Beta(1+x, 1+n−x) (uniform prior). Exact: Evan Miller's sum
    Σ_{i=0}^{α_t−1} B(α_c+i, β_c+β_t) / ((β_t+i)·B(1+i, β_t)·B(α_c, β_c)), computed with
    ``scipy.special.betaln`` in log space. The sum has α_t terms, so when x_t is large it is run on
    the mirrored question 1 − P(p_c > p_t) (α_c terms) if x_c is smaller. When both success counts
    exceed :data:`EXACT_CTBC_MAX_SUCCESSES` the posteriors are near-normal and the Gaussian
    Φ((μ_t − μ_c)/√(σ_t² + σ_c²)) on the Beta means and variances is used instead.
    """
    _check_count(x_c, n_c, "control ")
    _check_count(x_t, n_t, "treatment ")
    a_c, b_c = 1.0 + x_c, 1.0 + n_c - x_c
    a_t, b_t = 1.0 + x_t, 1.0 + n_t - x_t
    if min(x_c, x_t) > EXACT_CTBC_MAX_SUCCESSES:
        mean_c, mean_t = a_c / (a_c + b_c), a_t / (a_t + b_t)
        var_c = a_c * b_c / ((a_c + b_c) ** 2 * (a_c + b_c + 1.0))
        var_t = a_t * b_t / ((a_t + b_t) ** 2 * (a_t + b_t + 1.0))
        prob = float(stats.norm.cdf((mean_t - mean_c) / math.sqrt(var_c + var_t)))
    elif x_t <= x_c:
        prob = _ctbc_exact(a_t, b_t, a_c, b_c)
    else:
        prob = 1.0 - _ctbc_exact(a_c, b_c, a_t, b_t)
    return min(1.0, max(0.0, prob))


def srm_p_value(observed: Sequence[int], weights: Sequence[float]) -> float | None:
    """Sample-ratio-mismatch p-value: χ² goodness of fit of the split against the weights.

    χ² = Σ (o_i − N·w_i)² / (N·w_i) over variants with weight > 0 (weights renormalised over them),
    df = k − 1, p = ``chi2.sf(χ², k−1)``; flag when p < :data:`SRM_THRESHOLD`. ``None`` — no
    verdict — with fewer than two weighted variants or while any of them has fewer than
    :data:`SRM_MIN_PER_VARIANT` users (GrowthBook skips the check then).
    """
    if len(observed) != len(weights):
        raise ValueError(f"observed has {len(observed)} variants but weights has {len(weights)}")
    if any(o < 0 for o in observed) or any(w < 0 for w in weights):
        raise ValueError("observed counts and weights must be >= 0")
    pairs = [(o, w) for o, w in zip(observed, weights) if w > 0]
    if len(pairs) < 2 or any(o < SRM_MIN_PER_VARIANT for o, _ in pairs):
        return None
    total_n = sum(o for o, _ in pairs)
    total_w = sum(w for _, w in pairs)
    chi_sq = 0.0
    for o, w in pairs:
        expected = total_n * w / total_w
        chi_sq += (o - expected) ** 2 / expected
    return float(stats.chi2.sf(chi_sq, len(pairs) - 1))


def _variance_from_sums(n: int, total: float, total_sq: float) -> float:
    """Sample variance (ddof = 1) from n, Σx, Σx²: (Σx² − (Σx)²/n)/(n − 1), clamped at 0."""
    return max(0.0, (total_sq - total * total / n) / (n - 1))


def mean_interval(
    n: int,
    total: float,
    total_sq: float,
    z_or_t: Literal["t", "z"] = "t",
    confidence: float = 0.95,
) -> tuple[float | None, tuple[float, float] | None]:
    """Mean and its interval from sufficient statistics (n, Σx, Σx²), as aggregates store them.

    mean = Σx/n, s² = (Σx² − (Σx)²/n)/(n−1), interval = mean ± q·s/√n with q the Student-t
    quantile on n−1 df (``"t"``) or the normal one (``"z"``). ``(None, None)`` when n = 0 and
    ``(mean, None)`` when n = 1 (no spread to estimate); zero variance gives a zero-width interval.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if z_or_t not in ("t", "z"):
        raise ValueError(f"z_or_t must be 't' or 'z', got {z_or_t!r}")
    if n == 0:
        return (None, None)
    mean = total / n
    if n == 1:
        return (mean, None)
    se = math.sqrt(_variance_from_sums(n, total, total_sq) / n)
    upper_tail = (1.0 + confidence) / 2.0
    if z_or_t == "t":
        q = float(stats.t.ppf(upper_tail, n - 1))
    else:
        q = Z95 if confidence == 0.95 else float(stats.norm.ppf(upper_tail))
    return (mean, (mean - q * se, mean + q * se))


def welch_p_value(
    n1: int, s1: float, ss1: float, n2: int, s2: float, ss2: float
) -> float | None:
    """Two-sided Welch t-test of two means from sums (n, Σx, Σx²) — GrowthBook's default test.

    t = (x̄₂ − x̄₁)/√(s₁²/n₁ + s₂²/n₂), df = (s₁²/n₁ + s₂²/n₂)² / Σ (sᵢ²/nᵢ)²/(nᵢ−1)
    (Welch–Satterthwaite). ``None`` when an arm has fewer than 2 values or both variances are 0.
    """
    if n1 < 2 or n2 < 2:
        return None
    v1 = _variance_from_sums(n1, s1, ss1) / n1
    v2 = _variance_from_sums(n2, s2, ss2) / n2
    se2 = v1 + v2
    if se2 <= 0.0:
        return None
    t = (s2 / n2 - s1 / n1) / math.sqrt(se2)
    df = se2**2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    return float(2.0 * stats.t.sf(abs(t), df))


class CupedSums(Struct, frozen=True, kw_only=True):
    """One arm's sufficient statistics for CUPED: Y the metric in the experiment, X the same metric
    before exposure, for the same n visitors."""

    n: int
    sum_y: float
    sum_x: float
    sum_x2: float
    sum_y2: float
    sum_xy: float


class CupedArm(Struct, frozen=True, kw_only=True):
    """One arm after CUPED: the adjusted mean and per-visitor variance of Y' (s.e. = √(variance/n)),
    next to the unadjusted ones for comparison."""

    n: int
    mean: float
    variance: float
    unadjusted_mean: float
    unadjusted_variance: float


class CupedResult(Struct, frozen=True, kw_only=True):
    """θ pooled over arms, the pooled pre-exposure mean X̄, and each arm adjusted (input order)."""

    theta: float
    pre_mean: float
    arms: tuple[CupedArm, ...]


def cuped_adjust(arms: Sequence[CupedSums]) -> CupedResult:
    """CUPED variance reduction from per-arm sums of Y, X, X², Y², XY.

    θ = Cov(Y, X)/Var(X) on all arms pooled (GrowthBook's regression adjustment), Y' = Y − θ(X − X̄)
    with X̄ the pooled pre-exposure mean; per arm Var(Y') = Var(Y) + θ²Var(X) − 2θ·Cov(X, Y).
    θ is 0 (no adjustment) when X does not vary. Every arm needs n ≥ 2.
    """
    if not arms:
        raise ValueError("cuped_adjust needs at least one arm")
    for k, arm in enumerate(arms):
        if arm.n < 2:
            raise ValueError(f"arms[{k}].n must be >= 2 for a variance, got {arm.n}")
    n = sum(a.n for a in arms)
    sy = sum(a.sum_y for a in arms)
    sx = sum(a.sum_x for a in arms)
    var_x = _variance_from_sums(n, sx, sum(a.sum_x2 for a in arms))
    cov_xy = (sum(a.sum_xy for a in arms) - sx * sy / n) / (n - 1)
    theta = cov_xy / var_x if var_x > 0.0 else 0.0
    pre_mean = sx / n
    adjusted = []
    for a in arms:
        mean_y, mean_x = a.sum_y / a.n, a.sum_x / a.n
        var_y = _variance_from_sums(a.n, a.sum_y, a.sum_y2)
        var_xa = _variance_from_sums(a.n, a.sum_x, a.sum_x2)
        cov = (a.sum_xy - a.sum_x * a.sum_y / a.n) / (a.n - 1)
        adjusted.append(
            CupedArm(
                n=a.n,
                mean=mean_y - theta * (mean_x - pre_mean),
                variance=max(0.0, var_y + theta * theta * var_xa - 2.0 * theta * cov),
                unadjusted_mean=mean_y,
                unadjusted_variance=var_y,
            )
        )
    return CupedResult(theta=theta, pre_mean=pre_mean, arms=tuple(adjusted))


def enough_data(n: int, conversions: int, min_n: int = 100, min_conversions: int = 25) -> bool:
    """Whether an arm is old enough to report on: n ≥ 100 visitors and ≥ 25 conversions.

    Optimizely declares nothing before that; the UI says "too young" otherwise.
    """
    return n >= min_n and conversions >= min_conversions


class RateComparison(Struct, frozen=True, kw_only=True):
    """A conversion-type goal for one variant against control.

    ``rate``/``interval`` are the treatment's rate and Wilson interval (``None`` with no visitors);
    ``uplift`` is relative (0.1 = +10 %); ``enough_data`` is false while either arm is "too young".
    """

    n: int
    conversions: int
    rate: float | None
    interval: tuple[float, float] | None
    control_rate: float | None
    uplift: float | None
    uplift_interval: tuple[float, float] | None
    p_value: float | None
    chance_to_beat_control: float
    enough_data: bool


def compare_rates(control: tuple[int, int], treatment: tuple[int, int]) -> RateComparison:
    """Every number the results page shows for one variant's conversion goal.

    ``control`` and ``treatment`` are ``(conversions, visitors)``.
    """
    x_c, n_c = control
    x_t, n_t = treatment
    _check_count(x_c, n_c, "control ")
    _check_count(x_t, n_t, "treatment ")
    uplift, uplift_interval = relative_uplift(x_c, n_c, x_t, n_t)
    return RateComparison(
        n=n_t,
        conversions=x_t,
        rate=x_t / n_t if n_t else None,
        interval=wilson_interval(x_t, n_t) if n_t else None,
        control_rate=x_c / n_c if n_c else None,
        uplift=uplift,
        uplift_interval=uplift_interval,
        p_value=two_proportion_p_value(x_c, n_c, x_t, n_t),
        chance_to_beat_control=chance_to_beat_control(x_c, n_c, x_t, n_t),
        enough_data=enough_data(n_c, x_c) and enough_data(n_t, x_t),
    )


#: From this many answers on the NPS interval is the plain Wald one on the +1/0/−1 score; below it the
#: adjusted Wald (see :func:`nps_interval`).
NPS_WALD_MIN_N = 10


def _nps_wald(promoters: float, detractors: float, n: float, z: float) -> tuple[float, float, float]:
    """(NPS, lo, hi) on −100…100: 100·(P − D) ± 100·z·√((P + D − (P − D)²)/n)."""
    p, d = promoters / n, detractors / n
    centre = p - d
    half = z * math.sqrt(max(0.0, p + d - centre * centre) / n)
    return (100.0 * centre, 100.0 * (centre - half), 100.0 * (centre + half))


def nps_interval(
    promoters: int, passives: int, detractors: int, z: float = Z95
) -> tuple[float, float] | None:
    """Interval for the Net Promoter Score (−100…100) that is proper at small n; ``None`` with no answers.

    Each answer is scored +1/0/−1, so NPS = 100·mean and var = (P + D − (P − D)²)/n.

    * n ≥ :data:`NPS_WALD_MIN_N` with answers in more than one category: the Wald interval
      NPS ± 100·z·√var (the reference formula; its coverage is close to nominal at moderate n).
    * Otherwise — small n, or every answer the same, where Wald collapses to a point ([100, 100] for
      one promoter) — the *adjusted Wald* interval of Rocks, "Interval estimation for the net
      promoter score", The American Statistician 70(4), 2016 (as summarised by Lewis & Sauro): add
      3 pseudo-answers, ¾ promoter, ¾ detractor and 1½ passive, and apply the Wald formula to the
      adjusted shares. Like Agresti–Coull for a proportion, the pseudo-answers pull the centre
      towards 0 and keep the variance positive, so the interval reflects how little n answers say
      about a score bounded by ±100. At n = 1 this is about [−49, 99]; the interval is then widened
      to contain the observed NPS (only at n = 1 can it miss it) — an interval that excludes what
      was measured reads as a bug, and widening only raises coverage.

    The result is clipped to −100…100. Coverage is checked by seeded simulation in the tests.
    """
    if min(promoters, passives, detractors) < 0:
        raise ValueError("promoters, passives and detractors must be >= 0")
    n = promoters + passives + detractors
    if n == 0:
        return None
    score, lo, hi = _nps_wald(promoters, detractors, n, z)
    if n < NPS_WALD_MIN_N or lo == hi:
        _, lo, hi = _nps_wald(promoters + 0.75, detractors + 0.75, n + 3.0, z)
        lo, hi = min(lo, score), max(hi, score)
    return (max(-100.0, lo), min(100.0, hi))
