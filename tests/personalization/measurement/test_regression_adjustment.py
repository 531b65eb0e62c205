"""CUPED on conversions and CUPAC on the segment: checked against a direct per-visitor computation, through
results read from fixture aggregate hashes, and by seeded simulation (the interval shrinks and covers)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from redis.asyncio import Redis

from personalization.measurement.cupac import segment_covariate_sums
from personalization.measurement.regression_adjustment import adjust_rates
from personalization.measurement.results import experiment_results
from personalization.measurement.results_counts import Counts
from personalization.measurement.stats import Z95, CupedSums
from personalization.store.keys import agg_key
from personalization.types import Experience

GOAL = "signup"


def _direct(xs: list[np.ndarray], ys: list[np.ndarray]) -> dict[str, object]:
    """The CUPED estimate computed on the visitors themselves (what the sums must reproduce)."""
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    theta = np.cov(x_all, y_all, ddof=1)[0, 1] / np.var(x_all, ddof=1)
    adjusted = [y - theta * (x - x_all.mean()) for x, y in zip(xs, ys)]
    means = [a.mean() for a in adjusted]
    se2 = np.var(adjusted[1], ddof=1) / len(adjusted[1]) + np.var(adjusted[0], ddof=1) / len(adjusted[0])
    raw2 = np.var(ys[1], ddof=1) / len(ys[1]) + np.var(ys[0], ddof=1) / len(ys[0])
    return {"theta": theta, "means": means, "se": np.sqrt(se2), "reduction": 1 - se2 / raw2}


def _sums(x: np.ndarray, y: np.ndarray) -> CupedSums:
    return CupedSums(n=len(y), sum_y=float(y.sum()), sum_y2=float((y * y).sum()), sum_x=float(x.sum()),
                     sum_x2=float((x * x).sum()), sum_xy=float((x * y).sum()))


def _visitors(rng: np.random.Generator, n: int, lift: float) -> tuple[np.ndarray, np.ndarray]:
    """Pre-exposure conversions X (0–3) and a conversion Y whose chance rises with X."""
    x = rng.poisson(0.6, n).clip(0, 3).astype(float)
    y = (rng.random(n) < 0.05 + 0.12 * x + lift).astype(float)
    return x, y


def test_adjusted_rates_equal_the_direct_per_visitor_computation() -> None:
    rng = np.random.default_rng(5)
    (x0, y0), (x1, y1) = _visitors(rng, 3000, 0.0), _visitors(rng, 3000, 0.03)
    control, variant = adjust_rates([_sums(x0, y0), _sums(x1, y1)])
    truth = _direct([x0, x1], [y0, y1])
    assert control is not None and variant is not None
    assert control.theta == pytest.approx(truth["theta"], rel=1e-9) and variant.theta == control.theta
    assert [control.rate, variant.rate] == pytest.approx(truth["means"], rel=1e-9)
    assert variant.difference == pytest.approx(truth["means"][1] - truth["means"][0], rel=1e-9)
    lo, hi = variant.difference_interval
    assert (hi - lo) / 2 == pytest.approx(Z95 * truth["se"], rel=1e-9)
    assert variant.variance_reduction == pytest.approx(truth["reduction"], rel=1e-9) and variant.variance_reduction > 0.05
    assert variant.p_value < 0.05 and control.difference is None and control.p_value is None
    assert adjust_rates([None, _sums(x1, y1)])[1].difference is None  # no control: nothing to compare with


def _counts(cells: dict[str, list[tuple[int, int]]]) -> dict[str, Counts]:
    return {
        seg: Counts({f"{v}:visitors": n for v, (n, _) in enumerate(arms)} | {f"{v}:conv:{GOAL}": y for v, (_, y) in enumerate(arms)})
        for seg, arms in cells.items()
    }


def test_cupac_sums_equal_the_segment_rate_covariate_per_visitor() -> None:
    rng = np.random.default_rng(9)
    segs = rng.integers(0, 4, size=(2, 2000))
    ys = [(rng.random(2000) < 0.05 + 0.08 * segs[v]).astype(float) for v in range(2)]
    cells = {f"s{s}": [(int((segs[v] == s).sum()), int(ys[v][segs[v] == s].sum())) for v in range(2)] for s in range(4)}
    rate = {s: sum(y[segs[v] == s].sum() for v, y in enumerate(ys)) / (segs == s).sum() for s in range(4)}
    xs = [np.array([rate[s] for s in segs[v]]) for v in range(2)]
    sums = segment_covariate_sums(_counts(cells), 1, GOAL)
    for v in range(2):
        expected = _sums(xs[v], ys[v])
        assert sums[v].n == expected.n and sums[v].sum_y == expected.sum_y
        for field in ("sum_x", "sum_x2", "sum_xy"):
            assert getattr(sums[v], field) == pytest.approx(getattr(expected, field), rel=1e-12)
    adjusted = adjust_rates(sums)[1]
    truth = _direct(xs, ys)
    assert adjusted.rate == pytest.approx(truth["means"][1], rel=1e-9)
    assert adjusted.variance_reduction == pytest.approx(truth["reduction"], rel=1e-9)


def test_results_carry_cuped_and_cupac_next_to_the_unadjusted_numbers(redis_url: str) -> None:
    """Fixture hashes in the aggregator's layout (``<v>:xcsum:<goal>`` …, ``seg:<s>``) → the goal rows."""
    rng = np.random.default_rng(21)
    key = "cuped-fixture"
    arms = [_visitors(rng, 2000, 0.0), _visitors(rng, 2000, 0.04)]
    segs = [rng.integers(0, 3, 2000) for _ in arms]
    everything: dict[str, float] = {}
    seg_hashes: dict[str, dict[str, float]] = {f"seg:s{s}": {} for s in range(3)}
    for v, ((x, y), seg) in enumerate(zip(arms, segs)):
        everything |= {f"{v}:visitors": len(y), f"{v}:exposures": len(y), f"{v}:conv:{GOAL}": int(y.sum()),
                       f"{v}:xcsum:{GOAL}": int(x.sum()), f"{v}:xcsumsq:{GOAL}": int((x * x).sum()),
                       f"{v}:xcysum:{GOAL}": int((x * y).sum())}
        for s in range(3):
            seg_hashes[f"seg:s{s}"] |= {f"{v}:visitors": int((seg == s).sum()), f"{v}:conv:{GOAL}": int(y[seg == s].sum())}
    exp = Experience(id="id", key=key, name=key, type="ab_test", variants=("b",), weights=(0.5, 0.5), goals=(GOAL,))

    async def body():
        redis = Redis.from_url(redis_url)
        try:
            await redis.hset(agg_key(key, "all"), mapping=everything)
            await redis.sadd(agg_key(key, "goals"), GOAL)
            for dim, fields in seg_hashes.items():
                await redis.hset(agg_key(key, dim), mapping=fields)
                await redis.sadd(agg_key(key, "dims"), dim)
            return await experiment_results(redis, exp)
        finally:
            await redis.aclose()

    results = asyncio.run(body())
    control, variant = results.goals[GOAL].variants
    assert variant.rate == arms[1][1].mean() and variant.uplift is not None  # the unadjusted numbers stay
    truth = _direct([a[0] for a in arms], [a[1] for a in arms])
    assert variant.cuped.theta == pytest.approx(truth["theta"], rel=1e-9)
    assert variant.cuped.difference == pytest.approx(truth["means"][1] - truth["means"][0], rel=1e-9)
    assert variant.cuped.variance_reduction == pytest.approx(truth["reduction"], rel=1e-9)
    assert control.cuped is not None and control.cuped.difference is None
    expected_cupac = adjust_rates(segment_covariate_sums(
        {d[4:]: Counts(f) for d, f in seg_hashes.items()}, 1, GOAL))[1]
    assert variant.cupac == expected_cupac


def _coverage(runs: int, seed: int, kind: str) -> tuple[float, float, float]:
    """Share of 95 % adjusted intervals covering the true rate difference; mean adjusted / raw widths."""
    rng = np.random.default_rng(seed)
    delta, n = 0.03, 1500
    base = np.array([0.04, 0.10, 0.22, 0.40])  # segment (or history) predicts conversion strongly
    covered, widths, raw_widths = 0, [], []
    for _ in range(runs):
        per_arm = []
        for v in range(2):
            group = rng.integers(0, 4, n)
            y = (rng.random(n) < base[group] + delta * v).astype(float)
            per_arm.append((group, y))
        if kind == "cupac":
            cells = {f"s{s}": [(int((g == s).sum()), int(y[g == s].sum())) for g, y in per_arm] for s in range(4)}
            sums = segment_covariate_sums(_counts(cells), 1, GOAL)
        else:  # CUPED: X = conversions before exposure, a noisy reading of the same propensity
            sums = [_sums(rng.binomial(10, base[g]).astype(float), y) for g, y in per_arm]
        adjusted = adjust_rates(sums)[1]
        lo, hi = adjusted.difference_interval
        covered += lo <= delta <= hi
        widths.append(hi - lo)
        p = [y.mean() for _, y in per_arm]
        raw_widths.append(2 * Z95 * np.sqrt(sum(q * (1 - q) / n for q in p)))
    return covered / runs, float(np.mean(widths)), float(np.mean(raw_widths))


@pytest.mark.parametrize("kind", ["cupac", "cuped"])
def test_adjusted_intervals_shrink_and_stay_calibrated(kind: str) -> None:
    coverage, width, raw_width = _coverage(1000, 1234 if kind == "cupac" else 4321, kind)
    assert abs(coverage - 0.95) <= 0.02, coverage
    assert width < 0.97 * raw_width, (width, raw_width)
