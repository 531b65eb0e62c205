"""Value metrics per currency: revenue per visitor and average order value, never summed across currencies.

Adding EUR to USD gives a number that means nothing, and converting at some rate would hide the rate's
own movement in the result. So every currency is its own metric. Per arm and currency the aggregator
keeps, over the arm's visitors i (a visitor without an order in that currency contributes 0):
``<v>:cur:<CUR>:orders`` ΣO_i, ``revenue`` ΣR_i, ``buyers`` (visitors with an order), ``rsq`` ΣR_i²,
``osq`` ΣO_i² and ``ro`` ΣR_i·O_i.

* **Revenue per visitor** R̄ = ΣR/n: Student-t interval from (n, ΣR, ΣR²)
  (:func:`~personalization.measurement.stats.mean_interval`); vs control the difference with
  se² = s²_t/n_t + s²_c/n_c and Welch's p-value (:func:`~personalization.measurement.stats.welch_p_value`).
* **Average order value** A = ΣR/ΣO, a ratio of two per-visitor means, so visitors (the randomised
  unit), not orders, are the observations. Delta method (Deng, Knoblich & Lu, "Applying the delta method
  in metric analytics", KDD 2018): Var(A) ≈ (1/n)·(s²_R/Ō² − 2·R̄·s_RO/Ō³ + R̄²·s²_O/Ō⁴) with the
  sample (co)variances from ΣR², ΣO², ΣRO. Vs control: difference with se² = Var(A_t) + Var(A_c),
  normal interval and two-sided z p-value.
"""

from __future__ import annotations

import math

from msgspec import Struct
from scipy import stats as sps

from personalization.measurement.results_counts import Counts
from personalization.measurement.stats import Z95, mean_interval, welch_p_value

__all__ = ["CurrencyVariant", "MetricComparison", "ratio_delta", "value_by_currency"]

Interval = tuple[float, float]


class MetricComparison(Struct, frozen=True, kw_only=True):
    """One metric of one arm: its value and 95 % interval; vs control (variants only) the absolute
    difference with its interval and p-value. ``None`` where undefined (no visitors, no orders)."""

    value: float | None
    interval: Interval | None
    difference: float | None = None
    difference_interval: Interval | None = None
    p_value: float | None = None


class CurrencyVariant(Struct, frozen=True, kw_only=True):
    """One arm in one currency: the counts and the two value metrics."""

    variant: int
    visitors: int
    buyers: int
    orders: int
    revenue: float
    revenue_per_visitor: MetricComparison
    average_order_value: MetricComparison


def ratio_delta(n: int, sum_r: float, sum_o: float, sum_rr: float, sum_oo: float, sum_ro: float) -> tuple[float, float] | None:
    """(ΣR/ΣO, its delta-method standard error) over n units; ``None`` without orders or with n < 2."""
    if n < 2 or sum_o <= 0:
        return None
    mr, mo = sum_r / n, sum_o / n
    var_r = max(0.0, (sum_rr - sum_r * sum_r / n) / (n - 1))
    var_o = max(0.0, (sum_oo - sum_o * sum_o / n) / (n - 1))
    cov = (sum_ro - sum_r * sum_o / n) / (n - 1)
    var = (var_r / mo**2 - 2.0 * mr * cov / mo**3 + mr * mr * var_o / mo**4) / n
    return (sum_r / sum_o, math.sqrt(max(0.0, var)))


def _mean_se2(n: int, total: float, total_sq: float) -> float:
    """s²/n of a mean from (n ≥ 2, Σx, Σx²)."""
    return max(0.0, (total_sq - total * total / n) / (n - 1)) / n


def _compare(estimate: float, se2: float, p_value: float | None = None) -> tuple[Interval | None, float | None]:
    if not se2 > 0.0:
        return None, p_value
    se = math.sqrt(se2)
    p = p_value if p_value is not None else float(2.0 * sps.norm.sf(abs(estimate) / se))
    return (estimate - Z95 * se, estimate + Z95 * se), p


def _arm(counts: Counts, v: int, currency: str, n: int) -> tuple[tuple[float, ...], MetricComparison, MetricComparison, tuple | None]:
    f = counts.with_prefix(v, f"cur:{currency}:")
    sums = tuple(float(f.get(name, 0)) for name in ("revenue", "orders", "rsq", "osq", "ro"))
    mean, interval = mean_interval(n, sums[0], sums[2])
    ratio = ratio_delta(n, *sums)
    aov_interval = (ratio[0] - Z95 * ratio[1], ratio[0] + Z95 * ratio[1]) if ratio and ratio[1] > 0 else None
    rpv = MetricComparison(value=mean, interval=interval)
    aov = MetricComparison(value=ratio[0] if ratio else None, interval=aov_interval)
    return sums, rpv, aov, ratio


def value_by_currency(counts: Counts, visitors: list[int]) -> dict[str, list[CurrencyVariant]]:
    """Per currency seen in the ``all`` hash, arms 0…k (``visitors[v]`` exposed visitors each)."""
    currencies = sorted({name.split(":", 2)[1] for v in range(len(visitors)) for name in counts.with_prefix(v, "")
                         if name.startswith("cur:") and name.count(":") >= 2})
    out: dict[str, list[CurrencyVariant]] = {}
    for currency in currencies:
        arms = [_arm(counts, v, currency, n) for v, n in enumerate(visitors)]
        rows = []
        for v, (sums, rpv, aov, ratio) in enumerate(arms):
            if v > 0 and visitors[0] >= 2 and visitors[v] >= 2:
                c_sums, c_rpv, _, c_ratio = arms[0]
                diff = rpv.value - c_rpv.value
                se2 = _mean_se2(visitors[v], sums[0], sums[2]) + _mean_se2(visitors[0], c_sums[0], c_sums[2])
                welch = welch_p_value(visitors[0], c_sums[0], c_sums[2], visitors[v], sums[0], sums[2])
                interval, p = _compare(diff, se2, welch)
                rpv = MetricComparison(value=rpv.value, interval=rpv.interval, difference=diff,
                                       difference_interval=interval, p_value=p)
                if ratio and c_ratio:
                    d = ratio[0] - c_ratio[0]
                    interval, p = _compare(d, ratio[1] ** 2 + c_ratio[1] ** 2)
                    aov = MetricComparison(value=aov.value, interval=aov.interval, difference=d,
                                           difference_interval=interval, p_value=p)
            f = counts.with_prefix(v, f"cur:{currency}:")
            rows.append(CurrencyVariant(
                variant=v, visitors=visitors[v], buyers=int(f.get("buyers", 0)), orders=int(sums[1]),
                revenue=sums[0], revenue_per_visitor=rpv, average_order_value=aov,
            ))
        out[currency] = rows
    return out
