"""Experiment statistics checked against scipy / statsmodels on fixed inputs, plus seeded simulations."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from scipy import integrate
from scipy import stats as st
from statsmodels.stats.proportion import proportion_confint, proportions_ztest
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from personalization.measurement import stats
from personalization.measurement.stats import (
    EXACT_CTBC_MAX_SUCCESSES,
    SRM_THRESHOLD,
    Z95,
    CupedSums,
    chance_to_beat_control,
    compare_rates,
    cuped_adjust,
    enough_data,
    mean_interval,
    nps_interval,
    relative_uplift,
    srm_p_value,
    two_proportion_p_value,
    welch_p_value,
    wilson_interval,
)


def test_exported_surface() -> None:
    for name in stats.__all__:
        assert hasattr(stats, name), name
    assert Z95 == 1.959964
    assert SRM_THRESHOLD == 0.001


# --------------------------------------------------------------------------------------------- rates

WILSON_CASES = [(0, 1), (1, 1), (0, 10), (10, 10), (3, 5), (37, 120), (1, 1000), (5_000, 100_000)]


@pytest.mark.parametrize(("x", "n"), WILSON_CASES)
def test_wilson_matches_statsmodels(x: int, n: int) -> None:
    expected = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert wilson_interval(x, n) == pytest.approx(expected, abs=1e-7)


def test_wilson_other_level_matches_statsmodels() -> None:
    z90 = st.norm.ppf(0.95)
    assert wilson_interval(37, 120, z=z90) == pytest.approx(
        proportion_confint(37, 120, alpha=0.10, method="wilson"), abs=1e-12
    )


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0 < hi < 0.2
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and 0.8 < lo < 1
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(-1, 4)


PAIR_CASES = [(100, 1000, 120, 1000), (50, 1000, 70, 1100), (3, 40, 9, 41), (480, 5000, 430, 5000), (7, 7, 6, 7)]


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), PAIR_CASES)
def test_two_proportion_p_value_matches_statsmodels(x_c: int, n_c: int, x_t: int, n_t: int) -> None:
    _, expected = proportions_ztest([x_t, x_c], [n_t, n_c])
    assert two_proportion_p_value(x_c, n_c, x_t, n_t) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), [(0, 0, 5, 10), (5, 10, 0, 0), (0, 10, 0, 12), (10, 10, 12, 12)])
def test_two_proportion_p_value_undefined_is_none(x_c: int, n_c: int, x_t: int, n_t: int) -> None:
    assert two_proportion_p_value(x_c, n_c, x_t, n_t) is None


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), PAIR_CASES)
def test_relative_uplift_delta_method(x_c: int, n_c: int, x_t: int, n_t: int) -> None:
    # Delta method written the generic way: g = ∇(μ_t/μ_c), var = gᵀ Σ g with Σ diagonal.
    mu_c, mu_t = x_c / n_c, x_t / n_t
    cov = np.diag([mu_t * (1 - mu_t) / n_t, mu_c * (1 - mu_c) / n_c])
    grad = np.array([1 / mu_c, -mu_t / mu_c**2])
    se = math.sqrt(grad @ cov @ grad)
    uplift, interval = relative_uplift(x_c, n_c, x_t, n_t)
    assert uplift == pytest.approx(mu_t / mu_c - 1, rel=1e-12)
    assert interval == pytest.approx((uplift - Z95 * se, uplift + Z95 * se), rel=1e-9)


def test_relative_uplift_undefined() -> None:
    assert relative_uplift(0, 100, 5, 100) == (None, None)
    assert relative_uplift(0, 0, 5, 100) == (None, None)
    assert relative_uplift(5, 100, 0, 0) == (None, None)
    uplift, interval = relative_uplift(10, 10, 10, 10)  # all converted: defined, zero width
    assert uplift == 0.0 and interval == (0.0, 0.0)


# ---------------------------------------------------------------------------- chance to beat control


def _ctbc_by_integration(x_c: int, n_c: int, x_t: int, n_t: int) -> float:
    """P(p_t > p_c) = ∫ f_t(p)·F_c(p) dp, numerically."""
    post_c = st.beta(1 + x_c, 1 + n_c - x_c)
    post_t = st.beta(1 + x_t, 1 + n_t - x_t)
    lo = min(post_c.ppf(1e-12), post_t.ppf(1e-12))
    hi = max(post_c.isf(1e-12), post_t.isf(1e-12))
    value, _ = integrate.quad(lambda p: post_t.pdf(p) * post_c.cdf(p), lo, hi, points=[post_c.mean(), post_t.mean()], limit=200)
    return value


CTBC_CASES = [
    (0, 0, 0, 0),
    (0, 10, 1, 10),
    (30, 200, 40, 210),
    (40, 210, 30, 200),
    (100, 1000, 120, 1000),
    (1, 3, 3, 3),
    (900, 10_000, 1_000, 10_000),
    (4_990, 50_000, 5_300, 50_000),  # x_t above the threshold, mirrored exact sum over x_c
]


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), CTBC_CASES)
def test_chance_to_beat_control_exact_matches_integration(x_c: int, n_c: int, x_t: int, n_t: int) -> None:
    assert chance_to_beat_control(x_c, n_c, x_t, n_t) == pytest.approx(
        _ctbc_by_integration(x_c, n_c, x_t, n_t), abs=1e-6
    )


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), CTBC_CASES[1:6])
def test_chance_to_beat_control_matches_monte_carlo(x_c: int, n_c: int, x_t: int, n_t: int) -> None:
    rng = np.random.default_rng(20240601)
    draws = 200_000
    p_c = rng.beta(1 + x_c, 1 + n_c - x_c, draws)
    p_t = rng.beta(1 + x_t, 1 + n_t - x_t, draws)
    assert chance_to_beat_control(x_c, n_c, x_t, n_t) == pytest.approx(np.mean(p_t > p_c), abs=0.005)


def test_chance_to_beat_control_gaussian_branch() -> None:
    # Both success counts above the threshold: Gaussian on the Beta posteriors, still ~exact.
    args = (6_000, 60_000, 6_150, 60_000)
    assert min(args[0], args[2]) > EXACT_CTBC_MAX_SUCCESSES
    assert chance_to_beat_control(*args) == pytest.approx(_ctbc_by_integration(*args), abs=1e-4)


def test_chance_to_beat_control_symmetry_and_bounds() -> None:
    assert chance_to_beat_control(0, 0, 0, 0) == pytest.approx(0.5)
    assert chance_to_beat_control(50, 500, 50, 500) == pytest.approx(0.5)
    a = chance_to_beat_control(30, 200, 45, 200)
    b = chance_to_beat_control(45, 200, 30, 200)
    assert a + b == pytest.approx(1.0, abs=1e-12)
    assert 0.0 <= chance_to_beat_control(0, 10_000, 10_000, 10_000) <= 1.0
    assert chance_to_beat_control(0, 10_000, 10_000, 10_000) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------- SRM


@pytest.mark.parametrize(
    ("observed", "weights"),
    [([5_000, 5_200], [0.5, 0.5]), ([1_000, 1_010, 900], [1, 1, 1]), ([300, 720], [0.3, 0.7]), ([50, 50], [0.2, 0.8])],
)
def test_srm_matches_scipy_chisquare(observed: list[int], weights: list[float]) -> None:
    total_w = sum(weights)
    expected = [sum(observed) * w / total_w for w in weights]
    assert srm_p_value(observed, weights) == pytest.approx(st.chisquare(observed, expected).pvalue, rel=1e-9)


def test_srm_excludes_zero_weight_variants_and_flags_mismatch() -> None:
    with_zero = srm_p_value([5_000, 999, 5_200], [0.5, 0.0, 0.5])
    assert with_zero == pytest.approx(srm_p_value([5_000, 5_200], [0.5, 0.5]))
    mismatch = srm_p_value([5_000, 5_400], [0.5, 0.5])
    chi_sq = (200**2 / 5_200) * 2
    assert mismatch == pytest.approx(st.chi2.sf(chi_sq, 1))
    assert mismatch is not None and mismatch < SRM_THRESHOLD


def test_srm_skipped_when_too_few() -> None:
    assert srm_p_value([7, 100], [0.5, 0.5]) is None
    assert srm_p_value([0, 0], [0.5, 0.5]) is None
    assert srm_p_value([100], [1.0]) is None
    assert srm_p_value([100, 3], [1.0, 0.0]) is None  # one weighted variant: nothing to compare
    assert srm_p_value([8, 8], [0.5, 0.5]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        srm_p_value([10, 10], [1.0])


# ------------------------------------------------------------------------------------- value metrics


def _sums(values: np.ndarray) -> tuple[int, float, float]:
    return len(values), float(values.sum()), float((values**2).sum())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mean_interval_matches_scipy_t(seed: int) -> None:
    values = np.random.default_rng(seed).lognormal(3.0, 0.8, size=37)
    mean, interval = mean_interval(*_sums(values))
    expected = st.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=st.sem(values))
    assert mean == pytest.approx(values.mean(), rel=1e-12)
    assert interval == pytest.approx(expected, rel=1e-9)


def test_mean_interval_z() -> None:
    values = np.random.default_rng(4).normal(10.0, 2.0, size=500)
    mean, interval = mean_interval(*_sums(values), z_or_t="z")
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert interval == pytest.approx((mean - Z95 * se, mean + Z95 * se), rel=1e-9)
    _, interval90 = mean_interval(*_sums(values), z_or_t="z", confidence=0.90)
    assert interval90 == pytest.approx(st.norm.interval(0.90, loc=mean, scale=se), rel=1e-9)


def test_mean_interval_edges() -> None:
    assert mean_interval(0, 0.0, 0.0) == (None, None)
    assert mean_interval(1, 4.0, 16.0) == (4.0, None)
    # Zero variance, with sums large enough that Σx² − (Σx)²/n rounds below zero: no NaN.
    assert mean_interval(3, 3 * 0.1, 3 * 0.1**2) == (pytest.approx(0.1), (pytest.approx(0.1), pytest.approx(0.1)))
    with pytest.raises(ValueError):
        mean_interval(-1, 0.0, 0.0)
    with pytest.raises(ValueError):
        mean_interval(3, 1.0, 1.0, z_or_t="x")  # type: ignore[arg-type]


@pytest.mark.parametrize(("seed", "n1", "n2"), [(5, 40, 60), (6, 12, 300), (7, 1_000, 900)])
def test_welch_matches_scipy_and_statsmodels(seed: int, n1: int, n2: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(10.0, 3.0, size=n1)
    b = rng.normal(10.8, 6.0, size=n2)
    p = welch_p_value(*_sums(a), *_sums(b))
    assert p == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-7)
    assert p == pytest.approx(sm_ttest_ind(a, b, usevar="unequal")[1], rel=1e-7)


def test_welch_one_arm_constant_matches_scipy() -> None:
    a = np.full(20, 5.0)
    b = np.random.default_rng(8).normal(5.5, 1.0, size=30)
    # scipy's ttest_ind warns about the constant arm; its from-stats twin takes the std directly.
    expected = st.ttest_ind_from_stats(5.0, 0.0, 20, b.mean(), b.std(ddof=1), 30, equal_var=False).pvalue
    assert welch_p_value(*_sums(a), *_sums(b)) == pytest.approx(expected, rel=1e-7)


def test_welch_undefined_is_none() -> None:
    assert welch_p_value(1, 3.0, 9.0, 10, 30.0, 100.0) is None
    assert welch_p_value(0, 0.0, 0.0, 0, 0.0, 0.0) is None
    assert welch_p_value(5, 5.0, 5.0, 6, 12.0, 24.0) is None  # both constant


def _cuped_sums(y: np.ndarray, x: np.ndarray) -> CupedSums:
    return CupedSums(
        n=len(y),
        sum_y=float(y.sum()),
        sum_x=float(x.sum()),
        sum_x2=float((x * x).sum()),
        sum_y2=float((y * y).sum()),
        sum_xy=float((x * y).sum()),
    )


def test_cuped_matches_row_level_adjustment() -> None:
    rng = np.random.default_rng(9)
    arms_xy = []
    for lift, n in [(0.0, 400), (1.5, 450)]:
        x = rng.normal(50.0, 10.0, size=n)
        y = 0.8 * x + rng.normal(lift, 4.0, size=n)
        arms_xy.append((y, x))
    result = cuped_adjust([_cuped_sums(y, x) for y, x in arms_xy])

    y_all = np.concatenate([y for y, _ in arms_xy])
    x_all = np.concatenate([x for _, x in arms_xy])
    theta = np.cov(y_all, x_all, ddof=1)[0, 1] / np.var(x_all, ddof=1)
    assert result.theta == pytest.approx(theta, rel=1e-9)
    assert result.pre_mean == pytest.approx(x_all.mean(), rel=1e-12)
    for arm, (y, x) in zip(result.arms, arms_xy):
        adjusted = y - theta * (x - x_all.mean())
        assert arm.n == len(y)
        assert arm.mean == pytest.approx(adjusted.mean(), rel=1e-9)
        assert arm.variance == pytest.approx(adjusted.var(ddof=1), rel=1e-7)
        assert arm.unadjusted_mean == pytest.approx(y.mean(), rel=1e-12)
        assert arm.unadjusted_variance == pytest.approx(y.var(ddof=1), rel=1e-9)
        assert arm.variance < 0.5 * arm.unadjusted_variance  # the point of CUPED


def test_cuped_constant_covariate_means_no_adjustment() -> None:
    y = np.array([1.0, 2.0, 4.0])
    x = np.zeros(3)
    result = cuped_adjust([_cuped_sums(y, x), _cuped_sums(y + 1, x)])
    assert result.theta == 0.0
    assert result.arms[0].mean == pytest.approx(y.mean())
    assert result.arms[0].variance == pytest.approx(y.var(ddof=1))
    with pytest.raises(ValueError):
        cuped_adjust([])
    with pytest.raises(ValueError):
        cuped_adjust([_cuped_sums(y[:1], x[:1])])


# ----------------------------------------------------------------------------------------- reporting


def test_enough_data_is_optimizely_rule() -> None:
    assert enough_data(100, 25)
    assert not enough_data(99, 25)
    assert not enough_data(1_000, 24)
    assert enough_data(50, 5, min_n=50, min_conversions=5)


def test_compare_rates_combines_the_pieces() -> None:
    result = compare_rates((100, 1_000), (130, 1_000))
    assert result.rate == 0.13 and result.control_rate == 0.1
    assert result.interval == wilson_interval(130, 1_000)
    assert (result.uplift, result.uplift_interval) == relative_uplift(100, 1_000, 130, 1_000)
    assert result.p_value == two_proportion_p_value(100, 1_000, 130, 1_000)
    assert result.chance_to_beat_control == chance_to_beat_control(100, 1_000, 130, 1_000)
    assert result.enough_data and result.n == 1_000 and result.conversions == 130


def test_compare_rates_empty_arms_encode_without_nan() -> None:
    result = compare_rates((0, 0), (0, 0))
    assert result.rate is None and result.interval is None and result.p_value is None
    assert result.uplift is None and not result.enough_data
    assert result.chance_to_beat_control == pytest.approx(0.5)
    decoded = msgspec.json.decode(msgspec.json.encode(result))
    assert decoded["rate"] is None and decoded["uplift_interval"] is None
    with pytest.raises(ValueError):
        compare_rates((5, 4), (1, 10))


# ---------------------------------------------------------------------------------------- simulation


def test_aa_false_positive_rate_is_nominal() -> None:
    rng = np.random.default_rng(2024)
    runs, n, p = 200, 2_000, 0.1
    x_c = rng.binomial(n, p, size=runs)
    x_t = rng.binomial(n, p, size=runs)
    p_values = [two_proportion_p_value(int(a), n, int(b), n) for a, b in zip(x_c, x_t)]
    assert all(v is not None for v in p_values)
    rejections = sum(v < 0.05 for v in p_values)  # type: ignore[operator]
    assert 0.03 <= rejections / runs <= 0.08


def test_wilson_coverage() -> None:
    rng = np.random.default_rng(7)
    true_p, n = 0.1, 200
    draws = rng.binomial(n, true_p, size=500)
    covered = sum(lo <= true_p <= hi for lo, hi in (wilson_interval(int(x), n) for x in draws))
    assert covered / len(draws) >= 0.93


# ---------------------------------------------------------------------------------------------- NPS


def _nps_wald(promoters: float, detractors: float, n: float) -> tuple[float, float, float]:
    """(NPS, lo, hi) of the +1/0/−1 Wald formula, written out; used on adjusted counts too."""
    p, d = promoters / n, detractors / n
    half = Z95 * math.sqrt((p + d - (p - d) ** 2) / n)
    return 100 * (p - d), 100 * (p - d - half), 100 * (p - d + half)


def test_nps_interval_small_n_is_rocks_adjusted_wald() -> None:
    assert nps_interval(0, 0, 0) is None
    # n = 1: 3 pseudo-answers (¾ promoter, ¾ detractor, 1½ passive) → 1.75 and 0.75 of 4.
    _, lo, hi = _nps_wald(1.75, 0.75, 4.0)
    assert hi < 100.0  # adjusted Wald alone would exclude the one observed score ...
    assert nps_interval(1, 0, 0) == pytest.approx((lo, 100.0))  # ... so it is widened to contain it
    assert -60.0 < lo < -40.0  # one promoter says little: never [100, 100]
    assert nps_interval(0, 0, 1) == pytest.approx((-100.0, -lo))
    _, lo0, hi0 = _nps_wald(0.75, 0.75, 4.0)
    assert nps_interval(0, 1, 0) == pytest.approx((lo0, hi0)) and hi0 == pytest.approx(-lo0)
    # n = 2: a promoter and a detractor.
    _, lo2, hi2 = _nps_wald(1.75, 1.75, 5.0)
    assert nps_interval(1, 0, 1) == pytest.approx((lo2, hi2))
    # Every small sample gives a proper interval around its own score, inside the scale.
    for n in range(1, stats.NPS_WALD_MIN_N):
        for pro in range(n + 1):
            for det in range(n - pro + 1):
                score = 100 * (pro - det) / n
                lo, hi = nps_interval(pro, n - pro - det, det)  # type: ignore[misc]
                assert -100.0 <= lo < hi <= 100.0 and lo <= score <= hi


def test_nps_interval_from_ten_answers_is_wald_unless_degenerate() -> None:
    # n = 10, the reference example: P = D = 0.4, plain Wald.
    _, lo, hi = _nps_wald(4, 4, 10)
    assert nps_interval(4, 2, 4) == pytest.approx((lo, hi))
    # n = 10, all promoters: Wald would be [100, 100]; the adjusted interval is used instead.
    _, lo_all, _ = _nps_wald(10.75, 0.75, 13.0)
    assert nps_interval(10, 0, 0) == pytest.approx((lo_all, 100.0)) and lo_all < 60.0
    # n = 1,000: Wald.
    _, lo, hi = _nps_wald(520, 180, 1_000)
    assert nps_interval(520, 300, 180) == pytest.approx((lo, hi))
    with pytest.raises(ValueError):
        nps_interval(-1, 2, 3)


def _coverage(probs: tuple[float, float, float], n: int, draws: int, seed: int) -> float:
    """Share of seeded multinomial samples of n answers whose interval contains the true NPS."""
    truth = 100 * (probs[0] - probs[2])
    counts = np.random.default_rng(seed).multinomial(n, probs, size=draws)
    rows, weights = np.unique(counts, axis=0, return_counts=True)
    covered = 0
    for (pro, pas, det), w in zip(rows, weights):
        lo, hi = nps_interval(int(pro), int(pas), int(det))  # type: ignore[misc]
        covered += int(w) * (lo <= truth <= hi)
    return covered / draws


@pytest.mark.parametrize("probs", [(0.5, 0.3, 0.2), (0.3, 0.4, 0.3), (0.2, 0.3, 0.5), (0.6, 0.25, 0.15)])
def test_nps_interval_coverage_at_moderate_n(probs: tuple[float, float, float]) -> None:
    assert abs(_coverage(probs, 80, 20_000, seed=18) - 0.95) <= 0.02


def test_nps_interval_small_n_coverage_beats_wald() -> None:
    # Exact coverage by enumeration (multinomial pmf) at n = 5: adjusted Wald vs the collapsing Wald.
    n = 5
    for probs in [(0.8, 0.15, 0.05), (0.5, 0.3, 0.2), (0.3, 0.4, 0.3), (0.9, 0.1, 0.0)]:
        truth = 100 * (probs[0] - probs[2])
        ours = wald = 0.0
        for pro in range(n + 1):
            for det in range(n - pro + 1):
                mass = float(st.multinomial.pmf([pro, n - pro - det, det], n, probs))
                lo, hi = nps_interval(pro, n - pro - det, det)  # type: ignore[misc]
                ours += mass * (lo <= truth <= hi)
                _, w_lo, w_hi = _nps_wald(pro, det, n)
                wald += mass * (w_lo <= truth <= w_hi)
        assert ours >= wald and ours >= 0.9
