"""Bandit serving math: a compiled reward model, its predictions turned into probabilities, a choice.

Why it is built this way:

* **Pure Python, no numpy or scipy.** This runs on the request path for every visitor of a
  ``bandit`` experience, and :mod:`personalization.decision` imports no heavy library (a test checks
  it). Training, which needs scikit-learn, lives in :mod:`personalization.models.policy`; its
  ``compile_policy`` folds a fitted pipeline into the :class:`CompiledRewardModel` defined here.
* **The representation is shared.** :func:`action_features` is the reward model's input row;
  training builds its rows with it and :meth:`CompiledRewardModel.predict` skips the same reserved
  names, so training and serving cannot disagree on what ``action`` means.
* **Probabilities, not just a choice.** :func:`action_probabilities` turns the k predictions into
  the serving distribution (Thompson sampling computed deterministically, or epsilon-greedy);
  :func:`choose_action` picks from it with a uniform number the caller derives from a hash
  (:func:`uniform_from_key`), so a decision is a pure function of its inputs and the propensity
  logged for off-policy evaluation is exactly the probability the variant had.
* **Exploration is a budget, not a floor per variant.** At most ε of traffic (the experience's
  ``epsilon``) goes to variants other than the predicted best, and that budget decays with the
  logged rows the model rests on: ε_n = ε·min(1, √(n₀/n)), n₀ = :data:`BUDGET_ROWS`. The 1/√n
  rate is the rate at which the model's estimates still move (their standard error), so exploration
  shrinks exactly as fast as there is less left to learn; Thompson sampling, inside the budget, spends
  it on the variants that could still be best (its posterior per variant rests on that variant's own
  rows, so a well-measured loser gets almost nothing). A minimum propensity is kept only for
  off-policy evaluation, min(``min_probability``, ε_n/2k): its k copies never take more than half the
  budget, so a 50-variant bandit is never uniform. The model's predictions carry the rows they rest
  on (:class:`RewardPredictions`), so every caller — serving, ``vary evaluate``, the bench — gets the
  same distribution from the same call.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Generic, Literal, Protocol, TypeVar

from personalization.decision.thompson import plain_sum, probability_best
from personalization.seams import FeatureRow

__all__ = [
    "ACTION_KEY",
    "BUDGET_ROWS",
    "CompiledRewardModel",
    "RewardPredictions",
    "action_features",
    "action_probabilities",
    "choose_action",
    "exploration_budget",
    "exploration_floor",
    "sigmoid",
    "uniform_policy",
    "uniform_from_key",
]


#: The feature name :func:`action_features` gives the variant index; context features named
#: ``action`` or ``action=…`` are dropped (they would collide with it).
ACTION_KEY = "action"

#: n₀ of the exploration budget's decay ε_n = ε·min(1, √(n₀/n)): the full budget until the model rests
#: on this many logged rows (below it a reward model's held-out metrics are mostly noise), then 1/√n.
BUDGET_ROWS = 1_000.0

#: Rows each prediction counts for in Thompson sampling when the predictions do not say (plain lists).
DEFAULT_EVIDENCE_ROWS = 100.0


def sigmoid(z: float) -> float:
    """1 / (1 + e^-z) without overflow for any finite z."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def reserved(name: str) -> bool:
    """Whether a context feature's name collides with :data:`ACTION_KEY` (such features are dropped)."""
    return name == ACTION_KEY or name.startswith(ACTION_KEY + "=")


def action_features(features: FeatureRow, action: int) -> dict[str, float | str]:
    """The reward model's input for visitor ``features`` shown variant ``action``.

    ``{"action": "a"}`` (one-hot ``action=a``), each feature as is, and each feature again under
    ``action=a|<name>``. ``None`` values and reserved names (:data:`ACTION_KEY`) are dropped.
    """
    row: dict[str, float | str] = {ACTION_KEY: str(action)}
    prefix = f"{ACTION_KEY}={action}|"
    for name, value in features.items():
        if value is None or reserved(name):
            continue
        row[name] = value
        row[prefix + name] = value
    return row


# ---------------------------------------------------------------------------------------------------
# The compiled reward model


class RewardCard(Protocol):
    """What the compiled model reads off the card it was compiled with (a ``PolicyCard``)."""

    @property
    def version(self) -> str: ...

    @property
    def n_actions(self) -> int: ...

    @property
    def actions(self) -> tuple[int, ...]: ...


class RewardPredictions(list[float]):
    """P(reward | x, a) for a = 0..k−1, and ``rows``: the logged rows per variant the model was fitted on.

    A list (so it compares, indexes and serialises as one); :func:`action_probabilities` reads
    ``rows`` for Thompson sampling's per-variant evidence and for the exploration budget's decay.
    """

    __slots__ = ("rows",)

    def __init__(self, values: Sequence[float], rows: Sequence[float]) -> None:
        super().__init__(values)
        self.rows = tuple(float(r) for r in rows)


CardT = TypeVar("CardT", bound=RewardCard)


class CompiledRewardModel(Generic[CardT]):
    """A reward pipeline reduced to per-variant intercepts and one dict of per-variant weights.

    For variant a the pipeline computes σ(b + Σ_j c_j·(x_j − μ_j)/s_j) over the vectorised
    :func:`action_features` row. Compiling folds the scaler in (weight c_j/s_j, intercept
    b − Σ_j c_j μ_j/s_j, which is what every absent column contributes) and then the crossing: the
    intercept of variant a gains the ``action=a`` weight, and the weight of feature key ``f`` for
    variant a is that of ``f`` plus that of ``action=a|f``. Keys the vectorizer never saw are
    skipped, as the vectorizer skips them; ``None`` values and reserved names too.
    """

    __slots__ = ("_card", "_intercepts", "_weights")

    def __init__(
        self, card: CardT, intercepts: tuple[float, ...], weights: dict[str, tuple[float, ...]]
    ) -> None:
        self._card = card
        self._intercepts = intercepts
        self._weights = weights

    @property
    def version(self) -> str:
        return self._card.version

    @property
    def n_actions(self) -> int:
        return self._card.n_actions

    @property
    def card(self) -> CardT:
        return self._card

    @property
    def intercepts(self) -> tuple[float, ...]:
        """Per-variant intercepts, scaler and crossing folded in (what the decision bundle ships)."""
        return self._intercepts

    @property
    def weights(self) -> dict[str, tuple[float, ...]]:
        """Feature key → per-variant weights, folded (what the decision bundle ships)."""
        return self._weights

    def predict(self, features: FeatureRow) -> list[float]:
        """P(reward | features, a) for a = 0..k−1, equal to the pipeline's ``predict_proba``.

        A :class:`RewardPredictions` carrying the card's training rows per variant when it has them.
        """
        weights = self._weights
        z = list(self._intercepts)
        k = len(z)
        for name, value in features.items():
            if value is None or reserved(name):
                continue
            if isinstance(value, str):
                w = weights.get(name + "=" + value)
                if w is not None:
                    for a in range(k):
                        z[a] += w[a]
            else:
                w = weights.get(name)
                if w is not None:
                    for a in range(k):
                        z[a] += w[a] * value
        values = [sigmoid(v) for v in z]
        rows = self._card.actions
        if len(rows) == k and sum(rows) > 0:
            return RewardPredictions(values, rows)
        return values

    def __repr__(self) -> str:
        return f"CompiledRewardModel(version={self.version!r}, n_actions={self.n_actions})"


# ---------------------------------------------------------------------------------------------------
# From predictions to a choice


def _epsilon_greedy(predictions: Sequence[float], epsilon: float) -> list[float]:
    """ε/k to every action plus 1 − ε split equally among the actions with the top prediction."""
    k = len(predictions)
    top = max(predictions)
    winners = [a for a in range(k) if predictions[a] == top]
    share = (1.0 - epsilon) / len(winners)
    return [epsilon / k + (share if predictions[a] == top else 0.0) for a in range(k)]


def _apply_floor(probabilities: list[float], floor: float) -> list[float]:
    """Raise every action to ≥ ``floor``, taking the mass from the others in proportion.

    Water-filling: L = actions below the floor get exactly ``floor``; the rest share 1 − floor·|L|
    in proportion to their original probabilities; any that this pushes below the floor join L, and
    repeat (at most k rounds). Needs floor·k ≤ 1.
    """
    k = len(probabilities)
    if floor <= 0.0:
        return list(probabilities)
    lifted: set[int] = set()
    while True:
        rest = [a for a in range(k) if a not in lifted]
        mass = plain_sum(probabilities[a] for a in rest)
        budget = 1.0 - floor * len(lifted)
        if not rest:  # only when floor·k = 1
            return [floor] * k
        if mass <= 0.0:  # unreachable when floor·k ≤ 1 but for rounding: share the budget equally
            return [floor if a in lifted else budget / len(rest) for a in range(k)]
        scaled = {a: probabilities[a] * budget / mass for a in rest}
        low = {a for a, value in scaled.items() if value < floor}
        if not low:
            return [floor if a in lifted else scaled[a] for a in range(k)]
        lifted |= low


def exploration_budget(epsilon: float, logged_rows: float | None) -> float:
    """ε_n = ε·min(1, √(n₀/n)): the share of traffic the non-best variants may get after n logged rows
    (n₀ = :data:`BUDGET_ROWS`); ε itself when n is unknown."""
    if logged_rows is None or logged_rows <= BUDGET_ROWS:
        return epsilon
    return epsilon * math.sqrt(BUDGET_ROWS / logged_rows)


def exploration_floor(min_probability: float, budget: float, k: int) -> float:
    """The minimum propensity: min(``min_probability``, budget/2k), so k floors take ≤ half the budget."""
    return min(min_probability, budget / (2.0 * k))


def _within_budget(probabilities: list[float], best: set[int], budget: float, floor: float) -> list[float]:
    """Give the non-best actions at most ``budget`` in all, keeping each at ≥ ``floor``.

    Over budget, each non-best action keeps its floor plus a share of budget − m·floor (m non-best
    actions) in proportion to what it had above the floor; the best actions share 1 − budget in
    proportion to what they had. Needs every probability ≥ floor and m·floor < budget (or no excess).
    """
    k = len(probabilities)
    others = [a for a in range(k) if a not in best]
    excess = math.fsum(probabilities[a] for a in others)
    if excess <= budget:
        return list(probabilities)
    spare = budget - floor * len(others)
    above = excess - floor * len(others)
    out = list(probabilities)
    for a in others:
        out[a] = floor + (probabilities[a] - floor) * spare / above
    kept = math.fsum(probabilities[a] for a in best)
    for a in best:
        out[a] = (1.0 - budget) * (probabilities[a] / kept if kept > 0.0 else 1.0 / len(best))
    return out


def action_probabilities(
    predictions: Sequence[float],
    method: Literal["thompson", "epsilon_greedy"] = "thompson",
    *,
    epsilon: float = 0.1,
    min_probability: float = 0.05,
    evidence_rows: float | Sequence[float] | None = None,
    logged_rows: float | None = None,
    decay: bool = True,
) -> list[float]:
    """The serving distribution over k variants given P(reward | x, a) per variant.

    The exploration budget is ε_n = :func:`exploration_budget` (``epsilon``, n) with n =
    ``logged_rows``, or the total of the predictions' rows (:class:`RewardPredictions`); ε when n
    is unknown or ``decay`` is off. Then:

    * ``"epsilon_greedy"``: ε_n/k to each, plus 1 − ε_n split equally among the exact argmax ties.
    * ``"thompson"``: P(a is best) under a Gaussian approximation of a Beta posterior around each
      prediction worth ``evidence_rows`` observations (per variant, or one number for all; default
      the predictions' rows, else :data:`DEFAULT_EVIDENCE_ROWS`), computed by quadrature —
      deterministic, so the same inputs always give the same vector and the logged propensity is
      exactly the probability the variant had — then held to the budget: the variants other than
      the predicted best get at most ε_n in all (:func:`_within_budget`).

    Every variant keeps ≥ :func:`exploration_floor` (min(``min_probability``, ε_n/2k), water-filled
    by :func:`_apply_floor`), and the vector sums to 1.
    """
    k = len(predictions)
    if k < 1:
        raise ValueError("no predictions: need one per variant")
    values = [float(p) for p in predictions]
    if not all(math.isfinite(p) for p in values):
        raise ValueError(f"predictions must be finite numbers, got {list(predictions)!r}")
    if not 0.0 <= min_probability <= 1.0:
        raise ValueError(f"min_probability must be in [0, 1], got {min_probability!r}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    known_rows = predictions.rows if isinstance(predictions, RewardPredictions) else None
    if logged_rows is None and known_rows is not None:
        logged_rows = math.fsum(known_rows)
    budget = exploration_budget(epsilon, logged_rows if decay else None)
    floor = exploration_floor(min_probability, budget, k)
    top = max(values)
    best = {a for a in range(k) if values[a] == top}
    if method == "epsilon_greedy":
        probabilities = _epsilon_greedy(values, budget)
    elif method == "thompson":
        if evidence_rows is None:  # a variant the model never saw rests on its prior alone (m = 0)
            rows = list(known_rows) if known_rows is not None else [DEFAULT_EVIDENCE_ROWS] * k
        else:
            rows = [float(evidence_rows)] * k if isinstance(evidence_rows, int | float) else list(evidence_rows)
            if len(rows) != k or not all(m > 0.0 for m in rows):
                raise ValueError(f"evidence_rows must be > 0, one number or one per variant, got {evidence_rows!r}")
        probabilities = probability_best(values, rows)
    else:
        raise ValueError(f"unknown method {method!r}: use 'thompson' or 'epsilon_greedy'")
    return _within_budget(_apply_floor(probabilities, floor), best, budget, floor)


def choose_action(probabilities: Sequence[float], u: float) -> int:
    """The variant whose cumulative-probability interval holds ``u`` ∈ [0, 1).

    Pure: the caller derives ``u`` deterministically (:func:`uniform_from_key`), so the same visitor
    gets the same variant and ``probabilities[chosen]`` is the propensity to log.
    """
    if not 0.0 <= u < 1.0:
        raise ValueError(f"u must be in [0, 1), got {u!r}")
    if not probabilities:
        raise ValueError("no probabilities to choose from")
    cumulative = 0.0
    last = 0
    for a, p in enumerate(probabilities):
        if p < 0.0:
            raise ValueError(f"probability {a} is negative: {p!r}")
        if p > 0.0:
            cumulative += p
            last = a
            if u < cumulative:
                return a
    return last  # u fell in the rounding gap when the sum is a hair below 1


def uniform_policy(k: int) -> list[float]:
    """1/k to each of k variants: the policy until a reward model exists."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k!r}")
    return [1.0 / k] * k


def uniform_from_key(*parts: str) -> float:
    """A uniform number in [0, 1) from a hash of ``parts`` (e.g. experience key, visitor id, day).

    The first 53 bits of SHA-256 over the parts joined by NUL, divided by 2^53: every float step, so
    the chosen variant's propensity is not quantised (GrowthBook's v2 hash has only 10,000 levels).
    """
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)
