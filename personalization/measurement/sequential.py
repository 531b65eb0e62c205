"""Statistics that stay honest when results are looked at again and again: pure functions over counts.

A live dashboard invites peeking. A fixed-horizon interval (μ̂ ± z·se) is valid at *one* look decided
in advance; looked at after every batch, an A/A test "finds" a difference far more often than α.
Two corrections live here:

* **Over time** — the Gaussian mixture confidence sequence of Howard, Ramdas, McAuliffe & Sekhon,
  "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), 2021
  (arXiv 1810.08240), the method GrowthBook's sequential testing uses. It holds at every sample size
  simultaneously with probability ≥ 1 − α, so it may be checked after every event:

      μ̂ ± B,  B = (1/N)·√((σ̂²N + ρ)·ln((σ̂²N + ρ)/(ρ·α²))),
      ρ = σ̂²·S / (2·ln(1/α) + ln(1 + 2·ln(1/α))),

  with N the visitors of both arms, σ̂² = se²·N the per-observation variance of the estimate and S the
  *sequential tuning parameter*: the sample size at which the sequence is tightest ("the sample size
  at which you expect to decide"; GrowthBook's default 5,000 — keep it fixed for an experiment). ρ is
  GrowthBook's ``sequential_rho``: their ρ_G = √(c/S) and this ρ = σ̂²/ρ_G² give identical widths.
  ``/work/shared/reference/statistics.md`` prints ρ = 2·S·σ̂²N/c; with N inside ρ the boundary shrinks
  like 1/√N and is no longer time-uniform (and the 2 does not match Howard et al. or GrowthBook), so
  Vary follows the paper; the A/A peeking simulation in the tests checks the result.
  The always-valid p-value is the reciprocal of the mixture martingale, i.e. the smallest α at which
  the sequence (with ρ fixed at the design α) excludes 0 — ``p ≤ α`` exactly when 0 is outside.
* **Across tests** — Benjamini–Hochberg adjusted p-values over the variant × goal tests of one
  experience (``statsmodels.stats.multitest.multipletests(method="fdr_bh")``).

Undefined quantities (an empty arm, zero variance, a zero baseline for a relative uplift) give
``None``, never NaN, as in :mod:`personalization.measurement.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from msgspec import Struct

__all__ = [
    "SEQUENTIAL_TUNING_PARAMETER",
    "SEQUENTIAL_ALPHA",
    "SequentialEstimate",
    "mixture_rho",
    "sequential_halfwidth",
    "sequential_interval",
    "sequential_p_value",
    "rate_difference",
    "mean_difference",
    "sequential_rates",
    "sequential_means",
    "adjusted_p_values",
]

#: S: the total sample size (both arms) at which the confidence sequence is tightest (GrowthBook's default).
SEQUENTIAL_TUNING_PARAMETER = 5_000.0

#: Level of the confidence sequence; ρ is tuned for it, so the p-value uses the same α.
SEQUENTIAL_ALPHA = 0.05


def _check(alpha: float, sequential_tuning_parameter: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not sequential_tuning_parameter > 0.0:
        raise ValueError(f"sequential_tuning_parameter must be > 0, got {sequential_tuning_parameter}")


def mixture_rho(
    variance: float,
    sequential_tuning_parameter: float = SEQUENTIAL_TUNING_PARAMETER,
    alpha: float = SEQUENTIAL_ALPHA,
) -> float:
    """Mixing variance ρ = σ̂²·S / (2·ln(1/α) + ln(1 + 2·ln(1/α))) that makes the sequence tightest at S.

    ``variance`` is σ̂², the per-observation variance (se²·N); the tuning rule of Howard et al. 2021
    for the two-sided normal mixture, as GrowthBook applies it.
    """
    _check(alpha, sequential_tuning_parameter)
    log_inv = 2.0 * math.log(1.0 / alpha)
    return variance * sequential_tuning_parameter / (log_inv + math.log(1.0 + log_inv))


def _intrinsic(standard_error: float, n: int, alpha: float, tuning: float) -> tuple[float, float]:
    """(V, ρ): intrinsic time V = σ̂²N = se²·N² and the mixing variance, after validating inputs."""
    if not (math.isfinite(standard_error) and standard_error > 0.0):
        raise ValueError(f"standard_error must be a positive number, got {standard_error}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    variance = standard_error * standard_error * n
    return variance * n, mixture_rho(variance, tuning, alpha)


def sequential_halfwidth(
    standard_error: float,
    n: int,
    *,
    alpha: float = SEQUENTIAL_ALPHA,
    sequential_tuning_parameter: float = SEQUENTIAL_TUNING_PARAMETER,
) -> float:
    """B = (1/N)·√((σ̂²N + ρ)·ln((σ̂²N + ρ)/(ρ·α²))) with σ̂² = se²·N; N = visitors of both arms."""
    v, rho = _intrinsic(standard_error, n, alpha, sequential_tuning_parameter)
    return math.sqrt((v + rho) * math.log((v + rho) / (rho * alpha * alpha))) / n


def sequential_interval(
    estimate: float,
    standard_error: float,
    n: int,
    *,
    alpha: float = SEQUENTIAL_ALPHA,
    sequential_tuning_parameter: float = SEQUENTIAL_TUNING_PARAMETER,
) -> tuple[float, float]:
    """Always-valid interval μ̂ ± B for an estimate with the usual (fixed-horizon) standard error.

    Always wider than μ̂ ± z·se — B²/se² = (1 + ρ/V)·(ln(1 + V/ρ) + 2·ln(1/α)) ≥ 2·ln(1/α) > z² — and
    closest to it (in ratio) around N = S; both shrink to μ̂ as N grows, the ratio like √ln N.
    """
    half = sequential_halfwidth(
        standard_error, n, alpha=alpha, sequential_tuning_parameter=sequential_tuning_parameter
    )
    return (estimate - half, estimate + half)


def sequential_p_value(
    estimate: float,
    standard_error: float,
    n: int,
    *,
    alpha: float = SEQUENTIAL_ALPHA,
    sequential_tuning_parameter: float = SEQUENTIAL_TUNING_PARAMETER,
) -> float:
    """Always-valid p-value of "no difference": the smallest α at which the sequence excludes 0.

    Solving |μ̂| = B for α with ρ held at the design ``alpha``:
    p = min(1, √((V + ρ)/ρ)·exp(−N²μ̂²/(2(V + ρ)))), V = σ̂²N — the reciprocal of the normal-mixture
    martingale, so P(p ever ≤ α) ≤ α under the null.
    """
    v, rho = _intrinsic(standard_error, n, alpha, sequential_tuning_parameter)
    log_p = 0.5 * math.log((v + rho) / rho) - n * n * estimate * estimate / (2.0 * (v + rho))
    return 1.0 if log_p >= 0.0 else math.exp(log_p)


class SequentialEstimate(Struct, frozen=True, kw_only=True):
    """An effect of treatment vs control with its fixed-horizon standard error and the always-valid
    ``interval`` and ``p_value``; ``n`` is the visitors of both arms."""

    estimate: float
    standard_error: float
    n: int
    interval: tuple[float, float]
    p_value: float


def _difference(
    mean_c: float, var_c: float, n_c: int, mean_t: float, var_t: float, n_t: int, relative: bool
) -> tuple[float, float] | None:
    """(estimate, se): absolute μ_t − μ_c with se² = var_t/n_t + var_c/n_c, or relative μ_t/μ_c − 1 by the
    delta method, se² = var_t/(n_t·μ_c²) + μ_t²·var_c/(n_c·μ_c⁴) (GrowthBook's frequentist engine)."""
    if relative:
        if mean_c == 0.0:
            return None
        estimate = mean_t / mean_c - 1.0
        se2 = var_t / (n_t * mean_c**2) + mean_t**2 * var_c / (n_c * mean_c**4)
    else:
        estimate = mean_t - mean_c
        se2 = var_t / n_t + var_c / n_c
    if not se2 > 0.0:
        return None
    return (estimate, math.sqrt(se2))


def rate_difference(
    x_c: int, n_c: int, x_t: int, n_t: int, *, relative: bool = True
) -> tuple[float, float] | None:
    """(estimate, se) of a conversion-rate effect, unpooled var = p̂(1−p̂) per visitor.

    ``None`` when an arm is empty, both rates are 0 or 1 (se = 0), or ``relative`` and p̂_c = 0.
    """
    for name, x, n in (("control", x_c, n_c), ("treatment", x_t, n_t)):
        if n < 0 or not 0 <= x <= n:
            raise ValueError(f"{name} successes must be between 0 and n={n}, got {x}")
    if n_c == 0 or n_t == 0:
        return None
    p_c, p_t = x_c / n_c, x_t / n_t
    return _difference(p_c, p_c * (1.0 - p_c), n_c, p_t, p_t * (1.0 - p_t), n_t, relative)


def mean_difference(
    control: tuple[int, float, float], treatment: tuple[int, float, float], *, relative: bool = True
) -> tuple[float, float] | None:
    """(estimate, se) of a value-metric effect from each arm's (n, Σx, Σx²), sample variance ddof = 1.

    ``None`` when an arm has fewer than 2 values, both variances are 0, or ``relative`` and x̄_c = 0.
    """
    arms = []
    for name, (n, total, total_sq) in (("control", control), ("treatment", treatment)):
        if n < 0:
            raise ValueError(f"{name} n must be >= 0, got {n}")
        if n < 2:
            return None
        arms.append((total / n, max(0.0, (total_sq - total * total / n) / (n - 1)), n))
    (m_c, v_c, n_c), (m_t, v_t, n_t) = arms
    return _difference(m_c, v_c, n_c, m_t, v_t, n_t, relative)


def _estimate(
    effect: tuple[float, float] | None, n: int, alpha: float, tuning: float
) -> SequentialEstimate | None:
    if effect is None:
        return None
    estimate, se = effect
    kwargs = {"alpha": alpha, "sequential_tuning_parameter": tuning}
    return SequentialEstimate(
        estimate=estimate,
        standard_error=se,
        n=n,
        interval=sequential_interval(estimate, se, n, **kwargs),
        p_value=sequential_p_value(estimate, se, n, **kwargs),
    )


def sequential_rates(
    x_c: int,
    n_c: int,
    x_t: int,
    n_t: int,
    *,
    relative: bool = True,
    alpha: float = SEQUENTIAL_ALPHA,
    sequential_tuning_parameter: float = SEQUENTIAL_TUNING_PARAMETER,
) -> SequentialEstimate | None:
    """Always-valid interval and p-value of a conversion-rate uplift (relative by default); N = n_c + n_t."""
    effect = rate_difference(x_c, n_c, x_t, n_t, relative=relative)
    return _estimate(effect, n_c + n_t, alpha, sequential_tuning_parameter)


def sequential_means(
    control: tuple[int, float, float],
    treatment: tuple[int, float, float],
    *,
    relative: bool = True,
    alpha: float = SEQUENTIAL_ALPHA,
    sequential_tuning_parameter: float = SEQUENTIAL_TUNING_PARAMETER,
) -> SequentialEstimate | None:
    """Always-valid interval and p-value of a value-metric effect from (n, Σx, Σx²) per arm."""
    effect = mean_difference(control, treatment, relative=relative)
    return _estimate(effect, control[0] + treatment[0], alpha, sequential_tuning_parameter)


def adjusted_p_values(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg adjusted p-values; ``None`` entries (untestable) stay ``None`` and don't count.

    Over the m defined p-values sorted ascending, adjusted p₍ᵢ₎ = min over j ≥ i of (m/j)·p₍ⱼ₎, capped
    at 1 (``multipletests(method="fdr_bh")``), returned in input order. Reject at FDR q where ≤ q.
    """
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    for p, i in indexed:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p_values[{i}] must be in [0, 1], got {p}")
    indexed.sort()
    m = len(indexed)
    out: list[float | None] = [None] * len(p_values)
    running = 1.0
    for rank in range(m, 0, -1):
        p, i = indexed[rank - 1]
        running = min(running, m * p / rank)
        out[i] = running
    return out
