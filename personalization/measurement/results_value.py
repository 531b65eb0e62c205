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

**Against what.** An A/B test compares each variant with control (variant 0). A personalization
experience serves its variants to its whole audience and keeps control empty; what it is measured
against is its *holdout* (the ``h`` arm), as its conversions are (:mod:`.results_lift`). So for a
personalization experience with a holdout, every variant's value metrics are compared with the
holdout's (``compared_with: "holdout"``), and, as ``personalization_lift`` does for conversions,
:func:`value_lift_by_currency` pools every assigned arm (intent to treat: each visitor is counted in
one arm, and the per-visitor sums add up) and compares it with the holdout, for any experience
that keeps one.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from msgspec import Meta, Struct
from scipy import stats as sps

from personalization.measurement.attribution import HOLDOUT_VARIANT
from personalization.measurement.results_counts import Counts
from personalization.measurement.stats import Z95, mean_interval, welch_p_value

__all__ = [
    "CurrencyArm",
    "CurrencyVariant",
    "MetricComparison",
    "ValueLift",
    "ratio_delta",
    "value_by_currency",
    "value_lift_by_currency",
]

#: The sums the aggregator keeps per arm and currency, in the order the helpers below use them.
_SUMS = ("revenue", "orders", "rsq", "osq", "ro")

Interval = tuple[float, float]


class MetricComparison(Struct, frozen=True, kw_only=True):
    """One metric of one arm: its value and 95 % interval; vs control (variants only) the absolute
    difference with its interval and p-value. ``None`` where undefined (no visitors, no orders)."""

    value: (
        Annotated[float, Meta(description="The metric's value; null where undefined (no visitors, no orders).")] | None
    )
    interval: Annotated[Interval, Meta(description="95 % interval of `value`.")] | None
    difference: Annotated[float, Meta(description="Absolute difference vs control (variants only).")] | None = None
    difference_interval: Annotated[Interval, Meta(description="95 % interval of `difference`.")] | None = None
    p_value: Annotated[float, Meta(description="p-value of `difference`.")] | None = None


class CurrencyVariant(Struct, frozen=True, kw_only=True):
    """One arm in one currency: the counts and the two value metrics."""

    variant: Annotated[int, Meta(description="Variant index; 0 is control.")]
    visitors: Annotated[int, Meta(description="Unique visitors of the variant.")]
    buyers: Annotated[int, Meta(description="Visitors with at least one purchase in this currency.")]
    orders: Annotated[int, Meta(description="Purchases in this currency.")]
    revenue: Annotated[float, Meta(description="Purchase value summed, in this currency.")]
    revenue_per_visitor: Annotated[
        MetricComparison, Meta(description="`revenue` / `visitors`, with its comparison to control.")
    ]
    average_order_value: Annotated[
        MetricComparison, Meta(description="`revenue` / `orders`, with its comparison to control.")
    ]
    compared_with: Annotated[
        Literal["control", "holdout"] | None,
        Meta(
            description="What the `difference`s are against: `control` (variant 0), or `holdout` for a "
            "personalization experience (its control is empty); null where nothing is compared."
        ),
    ] = None


class CurrencyArm(Struct, frozen=True, kw_only=True):
    """An arm of the personalization value lift in one currency: treated (every arm pooled) or holdout."""

    visitors: Annotated[int, Meta(description="Unique visitors of the arm.")]
    buyers: Annotated[int, Meta(description="Visitors with at least one purchase in this currency.")]
    orders: Annotated[int, Meta(description="Purchases in this currency.")]
    revenue: Annotated[float, Meta(description="Purchase value summed, in this currency.")]
    revenue_per_visitor: Annotated[
        MetricComparison, Meta(description="`revenue` / `visitors`; for treated, its difference from the holdout.")
    ]
    average_order_value: Annotated[
        MetricComparison, Meta(description="`revenue` / `orders`; for treated, its difference from the holdout.")
    ]


class ValueLift(Struct, frozen=True, kw_only=True):
    """Value in one currency: everyone assigned outside the holdout against the holdout."""

    treated: Annotated[CurrencyArm, Meta(description="Every assigned visitor outside the holdout, all variants pooled.")]
    holdout: Annotated[CurrencyArm, Meta(description="The holdout's visitors.")]


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


Sums = tuple[float, float, float, float, float]  # ΣR, ΣO, ΣR², ΣO², ΣRO


def _sums(counts: Counts, arm: int | str, currency: str) -> Sums:
    f = counts.with_prefix(arm, f"cur:{currency}:")
    revenue, orders, rsq, osq, ro = (float(f.get(name, 0)) for name in _SUMS)
    return revenue, orders, rsq, osq, ro


def _metrics(n: int, sums: Sums) -> tuple[MetricComparison, MetricComparison, tuple[float, float] | None]:
    """Revenue per visitor and average order value of one arm (no comparison yet), and the ratio."""
    mean, interval = mean_interval(n, sums[0], sums[2])
    ratio = ratio_delta(n, *sums)
    aov_interval = (ratio[0] - Z95 * ratio[1], ratio[0] + Z95 * ratio[1]) if ratio and ratio[1] > 0 else None
    rpv = MetricComparison(value=mean, interval=interval)
    aov = MetricComparison(value=ratio[0] if ratio else None, interval=aov_interval)
    return rpv, aov, ratio


def _versus(
    n: int, sums: Sums, n_base: int, base: Sums
) -> tuple[MetricComparison, MetricComparison, bool]:
    """One arm's two metrics, compared with the baseline arm's where both have ≥ 2 visitors; and
    whether they were compared."""
    rpv, aov, ratio = _metrics(n, sums)
    if n < 2 or n_base < 2:
        return rpv, aov, False
    base_rpv, _, base_ratio = _metrics(n_base, base)
    diff = rpv.value - base_rpv.value  # both defined: n ≥ 2
    se2 = _mean_se2(n, sums[0], sums[2]) + _mean_se2(n_base, base[0], base[2])
    welch = welch_p_value(n_base, base[0], base[2], n, sums[0], sums[2])
    interval, p = _compare(diff, se2, welch)
    rpv = MetricComparison(value=rpv.value, interval=rpv.interval, difference=diff, difference_interval=interval,
                           p_value=p)
    if ratio and base_ratio:
        d = ratio[0] - base_ratio[0]
        interval, p = _compare(d, ratio[1] ** 2 + base_ratio[1] ** 2)
        aov = MetricComparison(value=aov.value, interval=aov.interval, difference=d, difference_interval=interval,
                               p_value=p)
    return rpv, aov, True


def _currencies(counts: Counts, arms: list[int | str]) -> list[str]:
    return sorted({name.split(":", 2)[1] for arm in arms for name in counts.with_prefix(arm, "")
                   if name.startswith("cur:") and name.count(":") >= 2})


def value_by_currency(
    counts: Counts, visitors: list[int], *, against_holdout: bool = False
) -> dict[str, list[CurrencyVariant]]:
    """Per currency seen in the ``all`` hash, arms 0…k (``visitors[v]`` exposed visitors each).

    Variants 1…k are compared with control; with ``against_holdout`` (a personalization experience
    with a holdout) every variant, 0 included, is compared with the holdout instead."""
    base_arm: int | str = HOLDOUT_VARIANT if against_holdout else 0
    n_base = counts.count(HOLDOUT_VARIANT, "visitors") if against_holdout else (visitors[0] if visitors else 0)
    seen: list[int | str] = [*range(len(visitors)), *([HOLDOUT_VARIANT] if against_holdout else [])]
    out: dict[str, list[CurrencyVariant]] = {}
    for currency in _currencies(counts, seen):
        base = _sums(counts, base_arm, currency)
        rows = []
        for v, n in enumerate(visitors):
            sums = _sums(counts, v, currency)
            if against_holdout or v > 0:
                rpv, aov, compared = _versus(n, sums, n_base, base)
            else:
                (rpv, aov, _), compared = _metrics(n, sums), False
            rows.append(CurrencyVariant(
                variant=v, visitors=n, buyers=counts.count(v, f"cur:{currency}:buyers"), orders=int(sums[1]),
                revenue=sums[0], revenue_per_visitor=rpv, average_order_value=aov,
                compared_with=("holdout" if against_holdout else "control") if compared else None,
            ))
        out[currency] = rows
    return out


def value_lift_by_currency(counts: Counts, k: int) -> dict[str, ValueLift]:
    """Per currency, every assigned arm (0…k) pooled against the holdout: the value counterpart of
    ``personalization_lift``. Pooling adds the arms' per-visitor sums, which is exact (each visitor
    is counted in one arm). The caller decides whether the experience has a holdout."""
    arms: list[int | str] = list(range(k + 1))
    n_treated = sum(counts.count(v, "visitors") for v in arms)
    n_holdout = counts.count(HOLDOUT_VARIANT, "visitors")
    out: dict[str, ValueLift] = {}
    for currency in _currencies(counts, [*arms, HOLDOUT_VARIANT]):
        per_arm = [_sums(counts, v, currency) for v in arms]
        treated: Sums = tuple(sum(column) for column in zip(*per_arm, strict=True))  # type: ignore[assignment]
        held = _sums(counts, HOLDOUT_VARIANT, currency)
        rpv, aov, _ = _versus(n_treated, treated, n_holdout, held)
        h_rpv, h_aov, _ = _metrics(n_holdout, held)
        out[currency] = ValueLift(
            treated=CurrencyArm(
                visitors=n_treated, buyers=sum(counts.count(v, f"cur:{currency}:buyers") for v in arms),
                orders=int(treated[1]), revenue=treated[0], revenue_per_visitor=rpv, average_order_value=aov,
            ),
            holdout=CurrencyArm(
                visitors=n_holdout, buyers=counts.count(HOLDOUT_VARIANT, f"cur:{currency}:buyers"),
                orders=int(held[1]), revenue=held[0], revenue_per_visitor=h_rpv, average_order_value=h_aov,
            ),
        )
    return out
