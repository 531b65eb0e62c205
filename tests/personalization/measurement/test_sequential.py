"""Peeking-safe statistics: the mixture confidence sequence against GrowthBook's published test values
and a direct computation, an A/A simulation with a look after every batch, and Benjamini–Hochberg
against statsmodels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from personalization.measurement import sequential
from personalization.measurement.sequential import (
    SEQUENTIAL_ALPHA,
    SEQUENTIAL_TUNING_PARAMETER,
    adjusted_p_values,
    mean_difference,
    mixture_rho,
    rate_difference,
    sequential_halfwidth,
    sequential_interval,
    sequential_means,
    sequential_p_value,
    sequential_rates,
)
from personalization.measurement.stats import Z95, relative_uplift

# GrowthBook gbstats, tests/frequentist/test_tests.py (TestSequentialTTest): two arms with the same
# sums, relative uplift, rounded to 5 decimals there.
GB_CONTROL = (3000, 1396.87, 52377.9767)
GB_TREATMENT = (3461, 2422.7, 134698.29)


def _c(alpha: float) -> float:
    return 2.0 * math.log(1.0 / alpha) + math.log(1.0 + 2.0 * math.log(1.0 / alpha))


def _sums(values: np.ndarray) -> tuple[int, float, float]:
    return (len(values), float(values.sum()), float((values * values).sum()))


def test_exported_surface_and_defaults() -> None:
    for name in sequential.__all__:
        assert hasattr(sequential, name), name
    assert SEQUENTIAL_TUNING_PARAMETER == 5_000  # GrowthBook's default
    assert SEQUENTIAL_ALPHA == 0.05


# ------------------------------------------------------------------------------- reference values


def test_growthbook_published_values_for_means() -> None:
    result = sequential_means(GB_CONTROL, GB_TREATMENT, sequential_tuning_parameter=1000)
    assert result is not None and result.n == 6461
    assert round(result.estimate, 5) == 0.50336
    assert round(result.standard_error, 5) == 0.33341
    assert result.interval == pytest.approx((-0.55844, 1.56516), abs=1e-5)
    assert result.p_value == 1.0


def test_growthbook_published_values_for_proportions() -> None:
    result = sequential_rates(1396, 3000, 2422, 3461)  # default tuning parameter 5,000
    assert result is not None
    assert round(result.estimate, 5) == 0.50386
    assert round(result.standard_error, 5) == 0.03386
    assert result.interval == pytest.approx((0.40098, 0.60675), abs=1e-5)
    assert round(result.p_value, 5) == 0.0


@pytest.mark.parametrize(
    ("se", "n", "tuning", "alpha"),
    [(0.01, 10_000, 5_000, 0.05), (0.3, 50, 5_000, 0.05), (0.002, 200_000, 1_000, 0.01), (1.5, 7, 20, 0.1)],
)
def test_halfwidth_matches_both_parametrisations(se: float, n: int, tuning: float, alpha: float) -> None:
    # Howard et al.'s normal-mixture boundary, written out from the reference formula.
    var = se * se * n
    rho = var * tuning / _c(alpha)
    assert mixture_rho(var, tuning, alpha) == pytest.approx(rho, rel=1e-12)
    howard = math.sqrt((var * n + rho) * math.log((var * n + rho) / (rho * alpha**2))) / n
    # GrowthBook's form: ρ_G = √(c/S), half = σ̂·√(2(Nρ_G²+1)/(N²ρ_G²)·ln(√(Nρ_G²+1)/α)).
    rho_g = math.sqrt(_c(alpha) / tuning)
    k = n * rho_g**2 + 1.0
    growthbook = math.sqrt(var) * math.sqrt(2.0 * k / (n * rho_g) ** 2 * math.log(math.sqrt(k) / alpha))
    got = sequential_halfwidth(se, n, alpha=alpha, sequential_tuning_parameter=tuning)
    assert got == pytest.approx(howard, rel=1e-10)
    assert got == pytest.approx(growthbook, rel=1e-10)
    assert sequential_interval(0.2, se, n, alpha=alpha, sequential_tuning_parameter=tuning) == pytest.approx(
        (0.2 - got, 0.2 + got)
    )


@pytest.mark.parametrize(("estimate", "se", "n"), [(0.05, 0.01, 10_000), (-0.08, 0.02, 4_000), (0.5, 0.1, 100)])
def test_p_value_is_smallest_alpha_that_excludes_zero(estimate: float, se: float, n: int) -> None:
    p = sequential_p_value(estimate, se, n)
    assert 0.0 < p < 1.0
    # The boundary with ρ fixed at the design α, evaluated at α = p, passes exactly through 0.
    var = se * se * n
    rho = mixture_rho(var)
    boundary = math.sqrt((var * n + rho) * math.log((var * n + rho) / (rho * p * p))) / n
    assert boundary == pytest.approx(abs(estimate), rel=1e-9)
    # GrowthBook's e-value form: 1/p = exp(ρ_G²t²/(2(Nρ_G²+1)))/√(Nρ_G²+1), t = estimate/se.
    rho_g2 = _c(0.05) / SEQUENTIAL_TUNING_PARAMETER
    k = n * rho_g2 + 1.0
    assert p == pytest.approx(math.sqrt(k) * math.exp(-rho_g2 * n * (estimate / se) ** 2 / (2 * k)), rel=1e-9)


def test_p_value_agrees_with_the_interval() -> None:
    rng = np.random.default_rng(18)
    for _ in range(300):
        n = int(rng.integers(20, 100_000))
        se = float(rng.uniform(0.001, 0.2))
        estimate = float(rng.normal(0.0, 6.0 * se))
        lo, hi = sequential_interval(estimate, se, n)
        p = sequential_p_value(estimate, se, n)
        assert (p <= SEQUENTIAL_ALPHA) == (lo > 0.0 or hi < 0.0)
    assert sequential_p_value(0.0, 0.01, 1_000) == 1.0


def test_differences_are_growthbooks_delta_method() -> None:
    # Relative uplift of rates: same estimate and standard error as stats.relative_uplift.
    estimate, se = rate_difference(120, 1_000, 150, 1_100)  # type: ignore[misc]
    uplift, (lo, _) = relative_uplift(120, 1_000, 150, 1_100)  # type: ignore[misc]
    assert estimate == pytest.approx(uplift) and se == pytest.approx((uplift - lo) / Z95)
    absolute, se_abs = rate_difference(120, 1_000, 150, 1_100, relative=False)  # type: ignore[misc]
    assert absolute == pytest.approx(150 / 1_100 - 0.12)
    assert se_abs == pytest.approx(math.sqrt(0.12 * 0.88 / 1_000 + (150 / 1_100) * (950 / 1_100) / 1_100))
    # Means from sums: the Welch standard error of statsmodels / scipy.
    rng = np.random.default_rng(7)
    a, b = rng.gamma(2.0, 3.0, 400), rng.gamma(2.2, 3.0, 500)
    diff, se_m = mean_difference(_sums(a), _sums(b), relative=False)  # type: ignore[misc]
    t = st.ttest_ind(b, a, equal_var=False).statistic
    assert diff == pytest.approx(b.mean() - a.mean()) and diff / se_m == pytest.approx(t)


def test_undefined_inputs_give_none_and_nonsense_raises() -> None:
    assert rate_difference(0, 0, 5, 10) is None
    assert rate_difference(0, 10, 5, 10) is None  # zero baseline for a relative uplift
    assert rate_difference(0, 10, 0, 10, relative=False) is None  # zero variance
    assert sequential_rates(0, 10, 0, 10) is None
    assert mean_difference((1, 3.0, 9.0), (5, 10.0, 30.0)) is None
    assert sequential_means((1, 3.0, 9.0), (5, 10.0, 30.0)) is None
    with pytest.raises(ValueError):
        rate_difference(11, 10, 5, 10)
    with pytest.raises(ValueError):
        sequential_interval(0.1, 0.0, 100)
    with pytest.raises(ValueError):
        sequential_interval(0.1, 0.01, 0)
    with pytest.raises(ValueError):
        sequential_p_value(0.1, 0.01, 100, alpha=1.0)
    with pytest.raises(ValueError):
        sequential_halfwidth(0.01, 100, sequential_tuning_parameter=0.0)


# -------------------------------------------------------------------- against the fixed horizon


def test_sequence_contains_fixed_interval_and_converges() -> None:
    gaps, ratios = [], []
    for n_arm in (50, 500, 2_500, 5_000, 50_000, 500_000, 5_000_000):
        x_c, x_t = round(0.10 * n_arm), round(0.11 * n_arm)
        uplift, (f_lo, f_hi) = relative_uplift(x_c, n_arm, x_t, n_arm)  # type: ignore[misc]
        result = sequential_rates(x_c, n_arm, x_t, n_arm)
        assert result is not None and result.estimate == pytest.approx(uplift)
        s_lo, s_hi = result.interval
        assert s_lo < f_lo and f_hi < s_hi  # always wider: an always-valid interval costs width
        gaps.append((s_hi - s_lo) - (f_hi - f_lo))
        ratios.append((s_hi - s_lo) / (f_hi - f_lo))
    # Both shrink onto the estimate: the extra width falls monotonically towards 0.
    assert all(g2 < g1 for g1, g2 in itertools.pairwise(gaps))
    assert gaps[-1] < 0.01 * gaps[0]
    # The ratio is at least √(2 ln(1/α))/z, smallest near N ≈ S (2 × 2,500) and grows only like √ln N.
    assert min(ratios) >= math.sqrt(2 * math.log(20)) / Z95
    assert ratios.index(min(ratios)) in (2, 3)
    assert ratios[-1] < 2.1


def test_tuning_parameter_moves_where_the_sequence_is_tightest() -> None:
    # GrowthBook's check: a tuning parameter near the actual N gives the narrowest interval.
    width = {
        s: sequential_halfwidth(0.05, 6_461, sequential_tuning_parameter=s) for s in (10, 6_461, 10_000, 10**6)
    }
    assert width[6_461] < width[10_000] < width[10**6] and width[6_461] < width[10]


# ----------------------------------------------------------------------------- A/A with peeking


def test_aa_peeking_sequential_keeps_alpha_and_fixed_horizon_does_not() -> None:
    runs, looks, batch, rate, alpha = 2_000, 40, 100, 0.1, 0.05
    rng = np.random.default_rng(2021)
    x_c = rng.binomial(batch, rate, size=(runs, looks)).cumsum(axis=1)
    x_t = rng.binomial(batch, rate, size=(runs, looks)).cumsum(axis=1)
    n_arm = batch * np.arange(1, looks + 1)

    # Fixed horizon: pooled two-proportion z-test at every look, vectorised.
    p_c, p_t = x_c / n_arm, x_t / n_arm
    pooled = (x_c + x_t) / (2 * n_arm)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p_t - p_c) / np.sqrt(pooled * (1 - pooled) * 2 / n_arm)
    fixed_p = np.where(np.isfinite(z), 2 * st.norm.sf(np.abs(z)), 1.0)
    fixed_fpr = float((fixed_p < alpha).any(axis=1).mean())

    # Sequential: the always-valid p-value of the absolute difference, GrowthBook's unpooled se.
    var = p_c * (1 - p_c) / n_arm + p_t * (1 - p_t) / n_arm
    se = np.sqrt(var)
    n_total = 2 * n_arm
    seq_p = np.ones_like(se)
    for r, k in zip(*np.nonzero(se > 0)):
        seq_p[r, k] = sequential_p_value(float(p_t[r, k] - p_c[r, k]), float(se[r, k]), int(n_total[k]))
    seq_fpr = float((seq_p <= alpha).any(axis=1).mean())

    two_se = 2 * math.sqrt(alpha * (1 - alpha) / runs)
    assert seq_fpr <= alpha + two_se
    assert fixed_fpr > alpha + two_se
    # Spot-check that the vectorised loop used the count-based API's numbers.
    direct = sequential_rates(int(x_c[0, -1]), 4_000, int(x_t[0, -1]), 4_000, relative=False)
    assert direct is not None and direct.p_value == pytest.approx(seq_p[0, -1])


# --------------------------------------------------------------------------- Benjamini-Hochberg


def test_adjusted_p_values_match_statsmodels() -> None:
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 17, 60):
        ps = np.concatenate([rng.uniform(0, 1, m - m // 3), rng.uniform(0, 0.01, m // 3)])
        rng.shuffle(ps)
        expected = multipletests(ps, method="fdr_bh")[1]
        assert adjusted_p_values(list(ps)) == pytest.approx(list(expected), rel=1e-12)
    ties = [0.01, 0.01, 0.04, 0.04, 0.2]
    assert adjusted_p_values(ties) == pytest.approx(list(multipletests(ties, method="fdr_bh")[1]))


def test_adjusted_p_values_keep_none_and_are_monotone() -> None:
    raw = [0.04, None, 0.001, 0.5, None, 0.03]
    adjusted = adjusted_p_values(raw)
    assert adjusted[1] is None and adjusted[4] is None
    defined = [p for p in raw if p is not None]
    expected = iter(multipletests(defined, method="fdr_bh")[1])
    for a, r in zip(adjusted, raw):
        if r is not None:
            assert a == pytest.approx(next(expected)) and r <= a <= 1.0  # type: ignore[operator]
    order = sorted((r, a) for r, a in zip(raw, adjusted) if r is not None)
    assert all(a1 <= a2 for (_, a1), (_, a2) in itertools.pairwise(order))  # type: ignore[operator]
    assert adjusted_p_values([]) == [] and adjusted_p_values([None]) == [None]
    assert adjusted_p_values([1.0, 1.0]) == [1.0, 1.0]
    with pytest.raises(ValueError):
        adjusted_p_values([0.2, 1.5])
