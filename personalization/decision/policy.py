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
  the serving distribution (Thompson sampling computed deterministically, or epsilon-greedy) with
  an exploration floor; :func:`choose_action` picks from it with a uniform number the caller
  derives from a hash (:func:`uniform_from_key`), so a decision is a pure function of its inputs
  and the propensity logged for off-policy evaluation is exactly the probability the variant had.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Generic, Literal, Protocol, TypeVar

from personalization.seams import FeatureRow

__all__ = [
    "ACTION_KEY",
    "CompiledRewardModel",
    "action_features",
    "action_probabilities",
    "choose_action",
    "sigmoid",
    "uniform_policy",
    "uniform_from_key",
]


#: The feature name :func:`action_features` gives the variant index; context features named
#: ``action`` or ``action=…`` are dropped (they would collide with it).
ACTION_KEY = "action"


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

    def predict(self, features: FeatureRow) -> list[float]:
        """P(reward | features, a) for a = 0..k−1, equal to the pipeline's ``predict_proba``."""
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
        return [sigmoid(v) for v in z]

    def __repr__(self) -> str:
        return f"CompiledRewardModel(version={self.version!r}, n_actions={self.n_actions})"


# ---------------------------------------------------------------------------------------------------
# From predictions to a choice


def _gauss_hermite(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes and weights of n-point Gauss–Hermite quadrature (weight e^{-t²}), by Newton's method.

    The nodes are the roots of the orthonormal Hermite polynomial h_n, found from the largest down
    with the classic starting guesses (Numerical Recipes' ``gauher``) and the three-term recurrence;
    they agree with ``numpy.polynomial.hermite.hermgauss`` to ~1e-14.
    """
    pi_m4 = math.pi**-0.25
    nodes = [0.0] * n
    weights = [0.0] * n
    z = 0.0
    for i in range((n + 1) // 2):
        if i == 0:
            z = math.sqrt(2 * n + 1) - 1.85575 * (2 * n + 1) ** (-0.16667)
        elif i == 1:
            z -= 1.14 * n**0.426 / z
        elif i == 2:
            z = 1.86 * z - 0.86 * nodes[0]
        elif i == 3:
            z = 1.91 * z - 0.91 * nodes[1]
        else:
            z = 2.0 * z - nodes[i - 2]
        for _ in range(100):
            p1, p2 = pi_m4, 0.0
            for j in range(1, n + 1):
                p1, p2 = z * math.sqrt(2.0 / j) * p1 - math.sqrt((j - 1) / j) * p2, p1
            derivative = math.sqrt(2.0 * n) * p2
            step = p1 / derivative
            z -= step
            if abs(step) <= 1e-15:
                break
        nodes[i], nodes[n - 1 - i] = z, -z
        weights[i] = weights[n - 1 - i] = 2.0 / (derivative * derivative)
    order = sorted(range(n), key=nodes.__getitem__)
    return tuple(nodes[i] for i in order), tuple(weights[i] for i in order)


# Gauss–Hermite nodes/weights for E[f(X)], X ~ N(μ, σ²): Σ_i w_i f(μ + σ t_i), with t already scaled
# by √2 and w by 1/√π. 48 nodes give P(best) to ~1e-9 against adaptive quadrature for the variances
# used here.
_GH_RAW_NODES, _GH_RAW_WEIGHTS = _gauss_hermite(48)
_GH_NODES = tuple(t * math.sqrt(2.0) for t in _GH_RAW_NODES)
_GH_WEIGHTS = tuple(w / math.sqrt(math.pi) for w in _GH_RAW_WEIGHTS)
# The outer nodes weigh < 1e-18 (and multiply a product of CDFs ≤ 1): leaving them out changes no
# probability by more than 5e-17 and saves a quarter of the work.
_GH_TERMS = tuple((t, w) for t, w in zip(_GH_NODES, _GH_WEIGHTS) if w > 1e-18)
_SQRT2 = math.sqrt(2.0)


def _probability_best(predictions: Sequence[float], evidence_rows: float) -> list[float]:
    """P(action a has the highest reward rate) under independent Gaussian posteriors.

    Each prediction p is read as a Beta(p·m + 1, (1−p)·m + 1) posterior (m = ``evidence_rows``)
    and approximated by the Gaussian with its mean μ = (p·m + 1)/(m + 2) and variance
    μ(1 − μ)/(m + 3) — never zero, so no action is ever certain. Then
    P(a best) = ∫ φ_a(x) Π_{b≠a} Φ_b(x) dx, by Gauss–Hermite quadrature (deterministic).
    """
    mu = [(min(max(p, 0.0), 1.0) * evidence_rows + 1.0) / (evidence_rows + 2.0) for p in predictions]
    sd = [math.sqrt(m * (1.0 - m) / (evidence_rows + 3.0)) for m in mu]
    # Φ_b(x) = ½·erfc(−(x − μ_b) / (σ_b √2)): the normal CDF without scipy (the ½s are applied once).
    scales = [-1.0 / (s * _SQRT2) for s in sd]
    erfc = math.erfc
    half = 0.5 ** (len(mu) - 1)
    best: list[float] = []
    for a, (mu_a, sd_a) in enumerate(zip(mu, sd)):
        others = [(mu[b], scales[b]) for b in range(len(mu)) if b != a]
        total = 0.0
        for t, w in _GH_TERMS:
            x = mu_a + sd_a * t  # where action a's draw lands
            product = w
            for mu_b, scale_b in others:
                product *= erfc((x - mu_b) * scale_b)
            total += product
        best.append(max(total * half, 0.0))
    mass = sum(best)
    return [b / mass for b in best]


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
        mass = sum(probabilities[a] for a in rest)
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


def action_probabilities(
    predictions: Sequence[float],
    method: Literal["thompson", "epsilon_greedy"] = "thompson",
    *,
    epsilon: float = 0.1,
    min_probability: float = 0.05,
    evidence_rows: float = 100.0,
) -> list[float]:
    """The serving distribution over k variants given P(reward | x, a) per variant.

    * ``"epsilon_greedy"``: ε/k to each, plus 1 − ε split equally among the exact argmax ties.
    * ``"thompson"``: P(a is best) under a Gaussian approximation of a Beta posterior around each
      prediction worth ``evidence_rows`` observations (see :func:`_probability_best`), computed by
      quadrature — deterministic, so the same inputs always give the same vector, and the
      propensity logged for the chosen variant is exactly the probability it had.

    Then the exploration floor (:func:`_apply_floor`): each variant ends with ≥ ``min_probability``
    (lowered to 1/k when min_probability·k > 1, i.e. uniform), and the vector sums to 1.
    """
    k = len(predictions)
    if k < 1:
        raise ValueError("no predictions: need one per variant")
    values = [float(p) for p in predictions]
    if not all(math.isfinite(p) for p in values):
        raise ValueError(f"predictions must be finite numbers, got {list(predictions)!r}")
    if not 0.0 <= min_probability <= 1.0:
        raise ValueError(f"min_probability must be in [0, 1], got {min_probability!r}")
    if method == "epsilon_greedy":
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        probabilities = _epsilon_greedy(values, epsilon)
    elif method == "thompson":
        if not evidence_rows > 0.0:
            raise ValueError(f"evidence_rows must be > 0, got {evidence_rows!r}")
        probabilities = _probability_best(values, evidence_rows)
    else:
        raise ValueError(f"unknown method {method!r}: use 'thompson' or 'epsilon_greedy'")
    return _apply_floor(probabilities, min(min_probability, 1.0 / k))


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
