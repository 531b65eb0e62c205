"""The learned policy for ``bandit`` experiences: P(reward | features, variant) → probabilities.

Why it is built this way:

* **One reward model per experience, one artifact.** :func:`train_reward_model` fits a single
  scikit-learn :class:`~sklearn.pipeline.Pipeline`, ``DictVectorizer(sparse=True) →
  StandardScaler(with_mean=False) → LogisticRegression``, on one row per logged decision built by
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
  How strong the L2 is, whether rows are importance-weighted against the logging policy, and the
  Platt calibration folded into the coefficients are chosen by time-ordered cross-validation:
  :mod:`personalization.models.reward_fit`.
* **skops, not pickle** — same storage and the same trust check as the segment model: the file's
  schema types must all be in :data:`TRUSTED_TYPES` before skops constructs anything, and a model
  trained under another scikit-learn version is refused (:class:`ModelVersionMismatch`).
* **Compiled for serving.** :func:`compile_policy` folds the scaler and the crossing into one dict
  from vocabulary key to k per-variant weights, so
  :meth:`~personalization.decision.policy.CompiledRewardModel.predict` is one loop over the row's
  features (pure Python, equal to ``predict_proba`` to 1e-9, tested). The compiled model, and the
  step from its predictions to serving probabilities and a choice, are
  :mod:`personalization.decision.policy` (no scikit-learn on the request path).

Errors are the segment model's (one tree for every model file Vary loads)::

    ModelLoadError            a policy file is missing, unreadable, corrupt, or of another shape
     ├── ModelVersionMismatch trained under another scikit-learn version: retrain
     └── UntrustedModelError  the file names a type outside TRUSTED_TYPES: not loaded at all
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import numpy as np
import sklearn
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from personalization.decision.policy import (
    CompiledRewardModel,
    action_features,
    reserved,
)

# Storage, the trust check, the time split and the card facts are shared with the segment model on
# purpose: one implementation of "which types may a model file name" for every model Vary loads.
from personalization.models.files import (
    ModelLoadError,
    ModelVersionMismatch,
    UntrustedModelError,
    load_pipeline,
    model_version,
    read_card,
    save_pipeline,
)
from personalization.models.reward_fit import (
    calibrate,
    fit_reward_pipeline,
    importance_weights,
)
from personalization.models.training import (
    PIPELINE_TYPES,
    classification_metrics,
    creation_time,
    ordered_features,
    pipeline_steps,
    scaler_moments,
    time_split,
    training_window,
)

__all__ = [
    "TRUSTED_TYPES",
    "PolicyCard",
    "ModelLoadError",
    "ModelVersionMismatch",
    "UntrustedModelError",
    "build_reward_pipeline",
    "train_reward_model",
    "save_policy",
    "load_policy",
    "compile_policy",
    "predict_rewards",
]

FeatureRow = Mapping[str, float | str]

_ACTION_MAIN = re.compile(r"^action=(\d+)$")
_ACTION_CROSSED = re.compile(r"^action=(\d+)\|(.*)$", re.DOTALL)

#: Every type a saved reward pipeline is made of, and the only types :func:`load_policy` lets a file
#: name (skops alone trusts every scikit-learn estimator; see :mod:`personalization.models.training`):
#: exactly the shared pipeline's. Read off a dump of a trained pipeline; a test keeps it exact.
TRUSTED_TYPES: tuple[str, ...] = PIPELINE_TYPES


class PolicyCard(msgspec.Struct, frozen=True, kw_only=True):
    """What is known about one trained reward model, stored beside it as ``<version>.json``.

    ``metrics`` (``log_loss``, ``roc_auc``, ``brier``, ``positive_rate``) are measured on the newest
    :data:`~personalization.models.training.VALIDATION_SHARE` of rows by time, which the shipped
    pipeline did not train on. ``actions`` counts the training rows per variant, so a reader sees
    which variants the model knows little about.
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
    #: What time-ordered cross-validation chose (:mod:`personalization.models.reward_fit`): the
    #: ``C`` of the L2 penalty, ``"none"`` or ``"ipw"`` training weights, the Platt ``slope`` and
    #: ``intercept`` folded in, and ``cv_log_loss``. Empty on cards written before #21.
    fit: dict[str, float | str | None] = {}


# ---------------------------------------------------------------------------------------------------
# The representation (rows are :func:`~personalization.decision.policy.action_features`)


def build_reward_pipeline(random_state: int = 0, C: float = 1.0) -> Pipeline:
    """An unfitted sparse ``DictVectorizer → StandardScaler → LogisticRegression`` (integer random_state).

    Its rows are :func:`action_features`; the DR reward model in :mod:`personalization.models.ope`
    builds it here, and :func:`~personalization.models.reward_fit.fit_reward_pipeline` builds the
    same steps, so they cannot differ in shape.
    """
    return Pipeline(
        [
            ("vectorize", DictVectorizer(sparse=True)),
            ("scale", StandardScaler(with_mean=False)),
            ("classify", LogisticRegression(C=C, max_iter=1000, random_state=random_state)),
        ]
    )


# ---------------------------------------------------------------------------------------------------
# Training


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
    propensities: Sequence[float] | None = None,
) -> tuple[Pipeline, PolicyCard]:
    """Fit P(reward | features, variant) on logged decisions; describe it in a :class:`PolicyCard`.

    One row per decision: the visitor's features, the variant shown (0..n_actions−1) and a 0/1
    reward, and, when known, the ``propensities`` it was shown with (then importance weighting is a
    candidate of the cross-validation, and the validation loss targets uniform assignment). The
    newest :data:`~personalization.models.training.VALIDATION_SHARE` by ``timestamps`` (by row
    order when there are none) is held out; the pipeline is fitted on the rest
    (:func:`~personalization.models.reward_fit.fit_reward_pipeline`), Platt-calibrated on the
    held-out rows when it is measurably off (:func:`~personalization.models.reward_fit.calibrate`:
    two parameters, so the card's metrics, measured on the same rows, are optimistic by ~2/n), and
    the card's metrics describe exactly the shipped pipeline. Same data + same ``created_at`` = same version. Raises
    :class:`ValueError` on bad input or data that cannot train and validate (a single reward value
    in either part).
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
    train_idx, valid_idx = time_split(n, timestamps, "reward model")
    for part, idx in (("training", train_idx), ("validation", valid_idx)):
        if len(set(y[idx].tolist())) < 2:
            raise ValueError(f"the {part} rows have only one reward value; need 0s and 1s in both")

    weights = importance_weights(a, propensities, n_actions)
    rows = [action_features(contexts[i], int(a[i])) for i in range(n)]
    pipeline, choice = fit_reward_pipeline(
        [rows[i] for i in train_idx],
        y[train_idx].astype(np.int64),
        None if weights is None else weights[train_idx],
        random_state,
    )

    valid_rows = [rows[i] for i in valid_idx]
    y_valid = y[valid_idx].astype(np.int64)
    slope, intercept = calibrate(pipeline, valid_rows, y_valid, None if weights is None else weights[valid_idx])
    p = pipeline.predict_proba(valid_rows)[:, 1]
    measured = classification_metrics(y_valid, p)
    metrics = {  # the card's order: log loss first
        "log_loss": measured["log_loss"],
        "roc_auc": measured["roc_auc"],
        "brier": measured["brier"],
        "positive_rate": float(y_valid.mean()),
    }
    created = creation_time(created_at)
    # pol-<UTC YYYYMMDDHHMMSS>-<8 hex of a hash of the training data and settings>
    hashed: dict[str, object] = {
        "contexts": list(contexts),
        "actions": a.tolist(),
        "rewards": y.astype(int).tolist(),
        "experience": experience,
        "timestamps": None if timestamps is None else list(timestamps),
        "random_state": random_state,
    }
    if propensities is not None:
        hashed["propensities"] = [float(p) for p in propensities]
    version = model_version("pol", hashed, created)
    counts = np.bincount(a[train_idx], minlength=n_actions)
    names = {name for row in contexts for name, value in row.items() if value is not None}
    card = PolicyCard(
        version=version,
        experience=experience,
        created_at=created,
        n_actions=n_actions,
        sklearn_version=sklearn.__version__,
        features=ordered_features({name for name in names if not reserved(name)}),
        training_window=training_window(timestamps),
        rows={"train": len(train_idx), "validation": len(valid_idx)},
        actions=tuple(int(c) for c in counts),
        metrics=metrics,
        fit={
            "C": choice.C,
            "weighting": choice.weighting,
            "calibration_slope": slope,
            "calibration_intercept": intercept,
            "cv_log_loss": choice.cv_log_loss,
        },
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
    return save_pipeline(pipeline, card, directory)


def load_policy(directory: Path, version: str | None = None) -> tuple[Pipeline, PolicyCard]:
    """Load a saved reward model (the ``active`` one when ``version`` is ``None``).

    Raises :class:`ModelVersionMismatch` when its card names another scikit-learn version,
    :class:`UntrustedModelError` when the file names a type outside :data:`TRUSTED_TYPES`, and
    :class:`ModelLoadError` for a missing, unreadable or corrupt file or a pipeline of another
    shape.
    """
    card, data, model_path, card_path = read_card(directory, version, PolicyCard, "policy")
    pipeline = load_pipeline(
        data,
        card.sklearn_version,
        TRUSTED_TYPES,
        _parts,
        where=str(model_path),
        version_where=str(card_path),
        label=f"policy {card.version}",
    )
    return pipeline, card


# ---------------------------------------------------------------------------------------------------
# Compiling for serving (the compiled model is personalization.decision.policy's)


def _parts(pipeline: object) -> tuple[DictVectorizer, StandardScaler, LogisticRegression]:
    """The fitted steps of a reward pipeline."""
    vectorizer, scaler, classifier = pipeline_steps(pipeline, "reward", LogisticRegression)
    assert isinstance(classifier, LogisticRegression)
    if list(getattr(classifier, "classes_", [])) != [0, 1]:
        raise ValueError("the reward model is not a fitted 0/1 LogisticRegression")
    return vectorizer, scaler, classifier


def _fold(
    pipeline: Pipeline, n_actions: int
) -> tuple[tuple[float, ...], dict[str, tuple[float, ...]]]:
    """Per-variant intercepts and per-key, per-variant weights of a fitted reward pipeline."""
    vectorizer, scaler, classifier = _parts(pipeline)
    k = n_actions
    mean, scale = scaler_moments(scaler, len(vectorizer.feature_names_))
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


def compile_policy(pipeline: Pipeline, card: PolicyCard) -> CompiledRewardModel[PolicyCard]:
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
