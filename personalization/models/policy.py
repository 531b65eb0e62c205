"""The learned policy for ``bandit`` experiences: P(reward | features, variant) → probabilities.

Why it is built this way:

* **One reward model per experience, one artifact.** :func:`train_reward_model` fits a single
  scikit-learn :class:`~sklearn.pipeline.Pipeline`, ``DictVectorizer(sparse=False) →
  StandardScaler → LogisticRegression``, on one row per logged decision built by
  :func:`action_features`:

  - the visitor's features as they are (``channel=web``, ``visits``): what raises the reward
    whatever the variant;
  - ``action=<a>``: the variant's own effect;
  - every feature again, crossed with the variant (``action=<a>|channel=web``,
    ``action=<a>|visits``): the per-variant effect for that kind of visitor — what lets the model
    learn that variant 2 wins for email visitors while variant 1 wins on the web.

  So logit P(reward | x, a) = b + β_a + Σ_f (w_f + w_{a,f})·x_f, with L2 pulling the crossed
  weights towards the shared ones when data is thin. The scaler is there (as in
  :mod:`personalization.models.segment_model`) so lbfgs converges on counts as well as on one-hot columns.
* **skops, not pickle** — same storage and the same trust check as the segment model: the file's
  schema types must all be in :data:`TRUSTED_TYPES` before skops constructs anything, and a model
  trained under another scikit-learn version is refused (:class:`ModelVersionMismatch`).
* **Compiled for serving.** :func:`compile_policy` folds the scaler and the crossing into one dict
  from vocabulary key to k per-variant weights, so :meth:`CompiledRewardModel.predict` is one loop
  over the row's features (pure Python, equal to ``predict_proba`` to 1e-9, tested).
* **Probabilities, not just a choice.** :func:`action_probabilities` turns the k predictions into
  the serving distribution (Thompson sampling computed deterministically, or epsilon-greedy) with
  an exploration floor; :func:`choose_action` picks from it with a uniform number the caller
  derives from a hash (:func:`uniform_from_key`), so a decision is a pure function of its inputs
  and the propensity logged for off-policy evaluation (:mod:`personalization.models.ope`) is exactly the
  probability the variant had.

Errors are the segment model's (one tree for every model file Vary loads)::

    ModelLoadError            a policy file is missing, unreadable, corrupt, or of another shape
     ├── ModelVersionMismatch trained under another scikit-learn version: retrain
     └── UntrustedModelError  the file names a type outside TRUSTED_TYPES: not loaded at all
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import msgspec
import numpy as np
import sklearn
from scipy.special import ndtr
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from personalization.decision.features import FEATURE_NAMES

# The trust check and atomic writes are shared with the segment model on purpose: one implementation
# of "which types may a model file name" for every model Vary loads.
from personalization.models.files import (
    ModelLoadError,
    ModelVersionMismatch,
    UntrustedModelError,
    check_sklearn_version,
    dump_bytes,
    load_trusted,
    read_model_files,
    model_version,
    sigmoid,
    write_model_files,
)

__all__ = [
    "ACTION_KEY",
    "TRUSTED_TYPES",
    "VALIDATION_SHARE",
    "PolicyCard",
    "RewardModel",
    "CompiledRewardModel",
    "ModelLoadError",
    "ModelVersionMismatch",
    "UntrustedModelError",
    "action_features",
    "build_reward_pipeline",
    "train_reward_model",
    "save_policy",
    "load_policy",
    "compile_policy",
    "predict_rewards",
    "action_probabilities",
    "choose_action",
    "uniform_policy",
    "uniform_from_key",
]

FeatureRow = Mapping[str, float | str]

#: The feature name :func:`action_features` gives the variant index; context features named
#: ``action`` or ``action=…`` are dropped (they would collide with it).
ACTION_KEY = "action"
#: The newest share of rows (by timestamp) held out to measure the reward model.
VALIDATION_SHARE = 0.2

_CARD_ENCODER = msgspec.json.Encoder()
_ACTION_MAIN = re.compile(r"^action=(\d+)$")
_ACTION_CROSSED = re.compile(r"^action=(\d+)\|(.*)$", re.DOTALL)

#: Every type a saved reward pipeline is made of, and the only types :func:`load_policy` lets a file
#: name (skops alone trusts every scikit-learn estimator; see :mod:`personalization.models.segment_model`).
#: Read off a dump of a trained pipeline; a test keeps it exact.
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.dict",
    "builtins.list",
    "builtins.str",
    "builtins.tuple",
    "numpy.float64",
    "numpy.ndarray",
    "sklearn.feature_extraction._dict_vectorizer.DictVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
)


class PolicyCard(msgspec.Struct, frozen=True, kw_only=True):
    """What is known about one trained reward model, stored beside it as ``<version>.json``.

    ``metrics`` (``log_loss``, ``roc_auc``, ``brier``, ``positive_rate``) are measured on the newest
    :data:`VALIDATION_SHARE` of rows by time, which the shipped pipeline did not train on.
    ``actions`` counts the training rows per variant, so a reader sees which variants the model
    knows little about.
    """

    version: str
    experience: str | None
    created_at: float
    n_actions: int
    sklearn_version: str
    features: tuple[str, ...]
    training_window: dict[str, str] | None
    rows: dict[str, int]
    actions: tuple[int, ...]
    metrics: dict[str, float]


@runtime_checkable
class RewardModel(Protocol):
    """What serving needs from a learned policy: a version to log, P(reward | x, a) per variant."""

    @property
    def version(self) -> str: ...

    @property
    def n_actions(self) -> int: ...

    def predict(self, features: FeatureRow) -> list[float]: ...


# ---------------------------------------------------------------------------------------------------
# The representation


def _reserved(name: str) -> bool:
    return name == ACTION_KEY or name.startswith(ACTION_KEY + "=")


def action_features(features: FeatureRow, action: int) -> dict[str, float | str]:
    """The reward model's input for visitor ``features`` shown variant ``action``.

    ``{"action": "a"}`` (one-hot ``action=a``), each feature as is, and each feature again under
    ``action=a|<name>``. ``None`` values and reserved names (:data:`ACTION_KEY`) are dropped.
    """
    row: dict[str, float | str] = {ACTION_KEY: str(action)}
    prefix = f"{ACTION_KEY}={action}|"
    for name, value in features.items():
        if value is None or _reserved(name):
            continue
        row[name] = value
        row[prefix + name] = value
    return row


def build_reward_pipeline(random_state: int = 0) -> Pipeline:
    """An unfitted ``DictVectorizer → StandardScaler → LogisticRegression`` (integer random_state).

    Its rows are :func:`action_features`; :func:`train_reward_model` and the DR reward model in
    :mod:`personalization.models.ope` both build it here, so they cannot differ.
    """
    return Pipeline(
        [
            ("vectorize", DictVectorizer(sparse=False)),
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(max_iter=1000, random_state=random_state)),
        ]
    )


# ---------------------------------------------------------------------------------------------------
# Training


def _base_features(rows: Sequence[FeatureRow]) -> tuple[str, ...]:
    seen = {name for row in rows for name, value in row.items() if value is not None}
    seen = {name for name in seen if not _reserved(name)}
    known = [name for name in FEATURE_NAMES if name in seen]
    return (*known, *sorted(seen - set(known)))


def _version(
    contexts: Sequence[FeatureRow],
    actions: Sequence[int],
    rewards: Sequence[int],
    experience: str | None,
    timestamps: Sequence[float] | None,
    random_state: int,
    created_at: float,
) -> str:
    """``pol-<UTC YYYYMMDDHHMMSS>-<8 hex of a hash of the training data and settings>``."""
    return model_version(
        "pol",
        {
            "contexts": list(contexts),
            "actions": list(actions),
            "rewards": list(rewards),
            "experience": experience,
            "timestamps": None if timestamps is None else list(timestamps),
            "random_state": random_state,
        },
        created_at,
    )


def train_reward_model(
    contexts: Sequence[FeatureRow],
    actions: Sequence[int],
    rewards: Sequence[float],
    n_actions: int,
    random_state: int = 0,
    *,
    experience: str | None = None,
    timestamps: Sequence[float] | None = None,
    created_at: float | None = None,
) -> tuple[Pipeline, PolicyCard]:
    """Fit P(reward | features, variant) on logged decisions; describe it in a :class:`PolicyCard`.

    One row per decision: the visitor's features, the variant shown (0..n_actions−1) and a 0/1
    reward. The newest :data:`VALIDATION_SHARE` by ``timestamps`` (by row order when there are none)
    is held out; the pipeline is fitted on the rest and the card's metrics describe exactly it.
    Same data + same ``created_at`` = same version. Raises :class:`ValueError` on bad input or data
    that cannot train and validate (a single reward value in either part).
    """
    n = len(contexts)
    if isinstance(n_actions, bool) or not isinstance(n_actions, int) or n_actions < 2:
        raise ValueError(f"n_actions must be an integer ≥ 2, got {n_actions!r}")
    if len(actions) != n or len(rewards) != n:
        raise ValueError(f"{n} contexts, {len(actions)} actions and {len(rewards)} rewards")
    if timestamps is not None and len(timestamps) != n:
        raise ValueError(f"{len(timestamps)} timestamps for {n} rows")
    a = np.asarray(actions)
    y = np.asarray(rewards, dtype=float)
    if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= n_actions):
        raise ValueError(f"actions must be integers in [0, {n_actions})")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("rewards must be 0 or 1 for the logistic reward model")
    n_validation = round(n * VALIDATION_SHARE)
    if n_validation < 1 or n - n_validation < 2:
        raise ValueError(f"{n} rows are too few to train and validate a reward model")

    if timestamps is None:
        order = list(range(n))
    else:
        order = sorted(range(n), key=timestamps.__getitem__)  # stable: ties keep row order
    train_idx, valid_idx = order[: n - n_validation], order[n - n_validation :]
    for part, idx in (("training", train_idx), ("validation", valid_idx)):
        if len(set(y[idx].tolist())) < 2:
            raise ValueError(f"the {part} rows have only one reward value; need 0s and 1s in both")

    rows = [action_features(contexts[i], int(a[i])) for i in range(n)]
    pipeline = build_reward_pipeline(random_state)
    pipeline.fit([rows[i] for i in train_idx], y[train_idx].astype(np.int64))

    p = pipeline.predict_proba([rows[i] for i in valid_idx])[:, 1]
    y_valid = y[valid_idx].astype(np.int64)
    metrics = {
        "log_loss": float(log_loss(y_valid, p, labels=[0, 1])),
        "roc_auc": float(roc_auc_score(y_valid, p)),
        "brier": float(brier_score_loss(y_valid, p)),
        "positive_rate": float(y_valid.mean()),
    }
    created = time.time() if created_at is None else float(created_at)
    window = None
    if timestamps is not None:
        window = {
            "start": datetime.fromtimestamp(min(timestamps), UTC).isoformat(),
            "end": datetime.fromtimestamp(max(timestamps), UTC).isoformat(),
        }
    counts = np.bincount(a[train_idx], minlength=n_actions)
    card = PolicyCard(
        version=_version(
            contexts,
            a.tolist(),
            y.astype(int).tolist(),
            experience,
            timestamps,
            random_state,
            created,
        ),
        experience=experience,
        created_at=created,
        n_actions=n_actions,
        sklearn_version=sklearn.__version__,
        features=_base_features(contexts),
        training_window=window,
        rows={"train": len(train_idx), "validation": len(valid_idx)},
        actions=tuple(int(c) for c in counts),
        metrics=metrics,
    )
    return pipeline, card


# ---------------------------------------------------------------------------------------------------
# Storage


def save_policy(pipeline: Pipeline, card: PolicyCard, directory: Path) -> Path:
    """Write ``<version>.skops`` and ``<version>.json`` in ``directory``, then make it ``active``.

    One directory per experience is the intended layout. Files are written under temporary names and
    renamed, ``active`` last, so a reader never sees a half-written policy. Returns the ``.skops``
    path.
    """
    return write_model_files(directory, card.version, dump_bytes(pipeline), _CARD_ENCODER.encode(card))


def load_policy(directory: Path, version: str | None = None) -> tuple[Pipeline, PolicyCard]:
    """Load a saved reward model (the ``active`` one when ``version`` is ``None``).

    Raises :class:`ModelVersionMismatch` when its card names another scikit-learn version,
    :class:`UntrustedModelError` when the file names a type outside :data:`TRUSTED_TYPES`, and
    :class:`ModelLoadError` for a missing, unreadable or corrupt file or a pipeline of another
    shape.
    """
    version, card_bytes, data, model_path = read_model_files(directory, version, "policy")
    card_path = model_path.with_suffix(".json")
    try:
        card = msgspec.json.decode(card_bytes, type=PolicyCard)
    except msgspec.DecodeError as exc:
        raise ModelLoadError(f"{card_path}: not a valid policy card: {exc}") from exc
    if card.version != version:
        raise ModelLoadError(f"{card_path}: the card is for version {card.version!r}, not {version!r}")
    check_sklearn_version(card.sklearn_version, str(card_path), f"policy {version}")
    pipeline = load_trusted(data, TRUSTED_TYPES, str(model_path))
    try:
        _parts(pipeline)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{model_path}: {exc}") from exc
    return pipeline, card


# ---------------------------------------------------------------------------------------------------
# Serving: the compiled reward model


def _parts(pipeline: object) -> tuple[DictVectorizer, StandardScaler, LogisticRegression]:
    """The fitted steps of a reward pipeline."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 3:
        raise TypeError(f"expected a 3-step reward Pipeline, got {type(pipeline).__name__}")
    vectorizer, scaler, classifier = (step for _, step in pipeline.steps)
    if not (
        isinstance(vectorizer, DictVectorizer)
        and isinstance(scaler, StandardScaler)
        and isinstance(classifier, LogisticRegression)
    ):
        raise TypeError(
            "expected DictVectorizer → StandardScaler → LogisticRegression, got "
            + " → ".join(type(step).__name__ for _, step in pipeline.steps)
        )
    if list(getattr(classifier, "classes_", [])) != [0, 1]:
        raise ValueError("the reward model is not a fitted 0/1 LogisticRegression")
    return vectorizer, scaler, classifier


_sigmoid = sigmoid


class CompiledRewardModel:
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
        self, card: PolicyCard, intercepts: tuple[float, ...], weights: dict[str, tuple[float, ...]]
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
    def card(self) -> PolicyCard:
        return self._card

    def predict(self, features: FeatureRow) -> list[float]:
        """P(reward | features, a) for a = 0..k−1, equal to the pipeline's ``predict_proba``."""
        weights = self._weights
        z = list(self._intercepts)
        k = len(z)
        for name, value in features.items():
            if value is None or _reserved(name):
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
        return [_sigmoid(v) for v in z]

    def __repr__(self) -> str:
        return f"CompiledRewardModel(version={self.version!r}, n_actions={self.n_actions})"


def _fold(
    pipeline: Pipeline, n_actions: int
) -> tuple[tuple[float, ...], dict[str, tuple[float, ...]]]:
    """Per-variant intercepts and per-key, per-variant weights of a fitted reward pipeline."""
    vectorizer, scaler, classifier = _parts(pipeline)
    k = n_actions
    n_features = len(vectorizer.feature_names_)
    mean = scaler.mean_ if scaler.with_mean else np.zeros(n_features)
    scale = scaler.scale_ if scaler.with_std else np.ones(n_features)
    folded = classifier.coef_[0] / scale
    base = float(classifier.intercept_[0] - folded @ mean)
    intercepts = [base] * k
    weights: dict[str, list[float]] = {}
    for key, index in vectorizer.vocabulary_.items():
        w = float(folded[index])
        if match := _ACTION_MAIN.match(key):
            a = int(match.group(1))
            if a < k:
                intercepts[a] += w
        elif match := _ACTION_CROSSED.match(key):
            a = int(match.group(1))
            if a < k:
                weights.setdefault(match.group(2), [0.0] * k)[a] += w
        else:
            per_action = weights.setdefault(key, [0.0] * k)
            for a in range(k):
                per_action[a] += w
    return tuple(intercepts), {key: tuple(values) for key, values in weights.items()}


def compile_policy(pipeline: Pipeline, card: PolicyCard) -> CompiledRewardModel:
    """Fold a trained reward pipeline into a :class:`CompiledRewardModel` for serving."""
    intercepts, weights = _fold(pipeline, card.n_actions)
    return CompiledRewardModel(card, intercepts, weights)


def predict_rewards(
    pipeline: Pipeline, contexts: Sequence[FeatureRow], n_actions: int
) -> np.ndarray:
    """P(reward | x, a) for many contexts, an (n × n_actions) array, through the compiled path.

    The batch form of :meth:`CompiledRewardModel.predict` (≈ 30× faster than vectorising the n·k
    :func:`action_features` rows for ``predict_proba``): what off-policy evaluation and offline
    policy comparisons need.
    """
    intercepts, weights = _fold(pipeline, n_actions)
    card = PolicyCard(
        version="batch",
        experience=None,
        created_at=0.0,
        n_actions=n_actions,
        sklearn_version=sklearn.__version__,
        features=(),
        training_window=None,
        rows={},
        actions=(),
        metrics={},
    )
    model = CompiledRewardModel(card, intercepts, weights)
    out = np.empty((len(contexts), n_actions), dtype=np.float64)
    for i, features in enumerate(contexts):
        out[i] = model.predict(features)
    return out


# ---------------------------------------------------------------------------------------------------
# Serving: from predictions to a choice

# Gauss–Hermite nodes/weights for E[f(X)], X ~ N(μ, σ²): Σ_i w_i f(μ + σ t_i), with t already scaled
# by √2 and w by 1/√π. 48 nodes give P(best) to ~1e-9 against adaptive quadrature for the variances
# used here (checked while writing this module).
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(48)
_GH_NODES = _GH_NODES * math.sqrt(2.0)
_GH_WEIGHTS = _GH_WEIGHTS / math.sqrt(math.pi)


def _probability_best(predictions: Sequence[float], evidence_rows: float) -> list[float]:
    """P(action a has the highest reward rate) under independent Gaussian posteriors.

    Each prediction p is read as a Beta(p·m + 1, (1−p)·m + 1) posterior (m = ``evidence_rows``)
    and approximated by the Gaussian with its mean μ = (p·m + 1)/(m + 2) and variance
    μ(1 − μ)/(m + 3) — never zero, so no action is ever certain. Then
    P(a best) = ∫ φ_a(x) Π_{b≠a} Φ_b(x) dx, by Gauss–Hermite quadrature (deterministic).
    """
    p = np.clip(np.asarray(predictions, dtype=float), 0.0, 1.0)
    mu = (p * evidence_rows + 1.0) / (evidence_rows + 2.0)
    sd = np.sqrt(mu * (1.0 - mu) / (evidence_rows + 3.0))
    k = mu.size
    x = mu[:, None] + sd[:, None] * _GH_NODES[None, :]  # (k, nodes): where action a's draw lands
    # cdf[a, i, b] = P(draw_b < x[a, i]): (k, nodes, k)
    cdf = ndtr((x[:, :, None] - mu[None, None, :]) / sd[None, None, :])
    own = np.arange(k)
    cdf[own, :, own] = 1.0
    best = cdf.prod(axis=2) @ _GH_WEIGHTS
    best = np.maximum(best, 0.0)
    return (best / best.sum()).tolist()


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
