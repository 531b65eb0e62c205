"""IPS, SNIPS and DR estimates of a candidate policy's value, with bootstrap intervals and the
diagnostics that say when not to trust them (see :mod:`personalization.models.ope` for the math).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Annotated

import msgspec
import numpy as np
from msgspec import Meta

from personalization.models.ope.data import Context, LoggedBandit, check_target
from personalization.models.ope.reward_model import RewardEstimator, cross_fitted_rewards, fit_predict_rewards

__all__ = [
    "LOW_PROPENSITY",
    "MIN_ESS_SHARE",
    "INTERVAL_LEVEL",
    "MIN_SUPPORT_GROUP",
    "MAX_UNLOGGED_SHARE",
    "Estimate",
    "OffPolicyEstimate",
    "evaluate_policy",
]

#: Logged propensities below this are reported: their weights reach 1/p and dominate IPS.
LOW_PROPENSITY = 0.01
#: An effective sample size below this share of n is reported as poor overlap.
MIN_ESS_SHARE = 0.10
#: Coverage of the bootstrap intervals.
INTERVAL_LEVEL = 0.95
#: Rows sharing their categorical features form a group for the support check from this many on.
MIN_SUPPORT_GROUP = 50
#: Target probability on never-logged (group, variant) pairs above this share of n is reported.
MAX_UNLOGGED_SHARE = 0.01


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    """A policy value and its bootstrap interval ``(low, high)`` at :data:`INTERVAL_LEVEL`."""

    value: Annotated[float, Meta(description="The policy value (mean reward).")]
    interval: Annotated[tuple[float, float], Meta(description="Its bootstrap interval `[low, high]`.")]


class OffPolicyEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """The candidate policy's value estimated three ways, the logging policy's value, diagnostics.

    ``n`` rows were used (``dropped`` had a missing or zero propensity); ``ess`` = (Σw)²/Σw² of the
    (clipped) weights; ``clipped`` weights were above the clip; ``warnings`` say when not to trust
    the numbers.
    """

    ips: Annotated[Estimate, Meta(description="Inverse-propensity-scoring estimate of the candidate's value.")]
    snips: Annotated[Estimate, Meta(description="Self-normalised IPS estimate.")]
    dr: Annotated[Estimate, Meta(description="Doubly-robust estimate (the one the launch gate uses).")]
    logged: Annotated[Estimate, Meta(description="The logging policy's value (mean reward) on the same rows.")]
    ess: Annotated[float, Meta(description="Effective sample size (Σw)²/Σw² of the (clipped) weights.")]
    n: Annotated[int, Meta(description="Logged rows used.")]
    clipped: Annotated[int, Meta(description="Weights above the clip.")]
    dropped: Annotated[int, Meta(description="Rows left out: missing or zero propensity.")] = 0
    warnings: Annotated[tuple[str, ...], Meta(description="When not to trust the numbers, in words.")] = ()


def _unlogged_mass(
    contexts: Sequence[Context], actions: np.ndarray, target: np.ndarray
) -> tuple[float, list[int]]:
    """Variants never logged at all; and the target's probability on variants logged, but never
    for visitors with the same categorical (string) features, in groups of ≥
    :data:`MIN_SUPPORT_GROUP` rows.

    A heuristic for μ(a|x) = 0 where π(a|x) > 0, which IPS and SNIPS cannot see from the weights.
    """
    n, k = target.shape
    overall = np.bincount(actions, minlength=k)
    never = [a for a in range(k) if overall[a] == 0]
    groups: dict[tuple[tuple[str, str], ...], list[int]] = defaultdict(list)
    for i, x in enumerate(contexts):
        groups[tuple(sorted((name, v) for name, v in x.items() if isinstance(v, str)))].append(i)
    mass = 0.0
    for rows in groups.values():
        if len(rows) < MIN_SUPPORT_GROUP:
            continue
        # variants never logged at all are reported on their own, so they are left out here
        unseen = (np.bincount(actions[rows], minlength=k) == 0) & (overall > 0)
        if unseen.any():
            mass += float(target[np.ix_(rows, np.flatnonzero(unseen))].sum())
    return mass, never


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    tail = (1.0 - INTERVAL_LEVEL) / 2.0 * 100.0
    if np.isnan(samples).all():
        return (math.nan, math.nan)
    low, high = np.nanpercentile(samples, [tail, 100.0 - tail])
    return (float(low), float(high))


def evaluate_policy(
    logged: LoggedBandit,
    target_probs: np.ndarray,
    *,
    reward_model: RewardEstimator | None = None,
    clip: float | None = None,
    n_bootstrap: int = 500,
    random_state: int = 0,
    n_folds: int = 2,
) -> OffPolicyEstimate:
    """Estimate the value of the policy with probabilities ``target_probs`` from ``logged`` rows.

    ``target_probs[i, a]`` = π(a | x_i) for logged row i (rows sum to 1). Rows whose propensity is
    missing or 0 are dropped and reported. Weights w_i = π(a_i|x_i)/p_i are clipped at ``clip`` when
    given (``clipped`` counts them). ``reward_model`` (default :func:`fit_predict_rewards`) gives
    DR's q̂ by ``n_folds``-fold cross-fitting. Intervals: ``n_bootstrap`` resamples of rows drawn
    with ``np.random.default_rng(random_state)``, the same resamples for every estimator.
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be ≥ 1, got {n_bootstrap}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be ≥ 2 for cross-fitting, got {n_folds}")
    if clip is not None and not clip > 0.0:
        raise ValueError(f"clip must be > 0, got {clip!r}")
    k = logged.n_actions
    target = check_target(target_probs, len(logged), k)
    warnings: list[str] = []

    # 1. Drop rows without a usable propensity.
    p_all = logged.propensities
    keep = np.isfinite(p_all) & (p_all > 0.0)
    dropped = int(len(logged) - keep.sum())
    if dropped:
        warnings.append(
            f"{dropped} of {len(logged)} rows had a missing or zero propensity and were dropped; "
            "the estimate describes the remaining rows only"
        )
    rows = np.flatnonzero(keep)
    n = rows.size
    if n < n_folds:
        raise ValueError(f"{n} rows with a propensity: too few to evaluate (need ≥ {n_folds})")
    contexts = [logged.contexts[i] for i in rows]
    actions, p, r, target = logged.actions[rows], p_all[rows], logged.rewards[rows], target[rows]

    low = p < LOW_PROPENSITY
    if low.any():
        warnings.append(
            f"{int(low.sum())} rows have a propensity below {LOW_PROPENSITY} "
            f"(smallest {p.min():.3g}): their weights reach {1.0 / p.min():.3g}; consider clip="
        )

    # 2. Importance weights, clipped.
    w = target[np.arange(n), actions] / p
    clipped = 0
    if clip is not None:
        clipped = int((w > clip).sum())
        w = np.minimum(w, clip)

    # 3. Per-row terms: IPS and DR are means of them, SNIPS a ratio of sums.
    estimator = reward_model or partial(fit_predict_rewards, random_state=random_state)
    q = cross_fitted_rewards(contexts, actions, r, k, estimator, n_folds, random_state)
    wr = w * r
    dr_terms = (target * q).sum(axis=1) + w * (r - q[np.arange(n), actions])
    w_sum = float(w.sum())
    ips = float(wr.mean())
    snips = float(wr.sum() / w_sum) if w_sum > 0.0 else math.nan
    dr = float(dr_terms.mean())
    logged_value = float(r.mean())
    if w_sum <= 0.0:
        warnings.append(
            "the target policy gives zero probability to every logged action: SNIPS is undefined"
        )

    # 4. Bootstrap over rows, in chunks so memory stays ~n_bootstrap-independent.
    rng = np.random.default_rng(random_state)
    boot = np.empty((4, n_bootstrap), dtype=np.float64)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        sums_w = w[idx].sum(axis=1)
        sums_wr = wr[idx].sum(axis=1)
        boot[0, start:stop] = sums_wr / n
        positive = sums_w > 0.0
        boot[1, start:stop] = np.where(positive, sums_wr / np.where(positive, sums_w, 1.0), np.nan)
        boot[2, start:stop] = dr_terms[idx].mean(axis=1)
        boot[3, start:stop] = r[idx].mean(axis=1)

    # 5. Diagnostics.
    square_sum = float((w * w).sum())
    ess = w_sum * w_sum / square_sum if square_sum > 0.0 else 0.0
    if ess < MIN_ESS_SHARE * n:
        warnings.append(
            f"poor overlap: effective sample size {ess:.1f} is below {MIN_ESS_SHARE:.0%} of the "
            f"{n} rows; the target policy differs too much from the logging policy to trust IPS"
        )
    mass, never = _unlogged_mass(contexts, actions, target)
    for a in never:
        share = float(target[:, a].sum()) / n
        if share > 0.0:
            warnings.append(
                f"variant {a} was never logged but the target policy gives it {share:.1%} of its "
                "probability: IPS and SNIPS cannot see it, DR relies on the reward model alone"
            )
    if mass / n > MAX_UNLOGGED_SHARE:
        warnings.append(
            f"poor overlap: the target policy puts {mass / n:.1%} of its probability on variants "
            "never logged for visitors with the same categorical features"
        )

    return OffPolicyEstimate(
        ips=Estimate(value=ips, interval=_percentiles(boot[0])),
        snips=Estimate(value=snips, interval=_percentiles(boot[1])),
        dr=Estimate(value=dr, interval=_percentiles(boot[2])),
        logged=Estimate(value=logged_value, interval=_percentiles(boot[3])),
        ess=float(ess),
        n=int(n),
        clipped=clipped,
        dropped=dropped,
        warnings=tuple(warnings),
    )
