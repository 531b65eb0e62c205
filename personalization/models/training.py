"""What training a segment model and a bandit's reward model have in common.

Both fit ``DictVectorizer → StandardScaler → <classifier>`` (dense for the segment model, sparse and
unscaled-centre for the reward model, whose variant crosses are mostly zeros) on feature rows, hold out
the newest rows to measure it, and describe it in a card. Those shared steps live here, once, so
the two models cannot drift apart in how they split, what a card says, or what a file may contain:

* :func:`time_split` — the newest :data:`VALIDATION_SHARE` of rows by time is held out;
* :func:`training_window`, :func:`creation_time`, :func:`ordered_features` — card facts;
* :func:`classification_metrics` — ROC AUC, log loss and Brier score on the held-out rows;
* :data:`PIPELINE_TYPES` — the types every saved pipeline is made of (each model adds its
  classifier's to form its trust list);
* :func:`pipeline_steps` and :func:`scaler_moments` — checking a loaded pipeline's shape and
  folding its scaler when it is compiled for serving.

Storage (``<version>.skops`` + card, the trust check) is :mod:`personalization.models.files`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from personalization.decision.features import FEATURE_NAMES

__all__ = [
    "VALIDATION_SHARE",
    "PIPELINE_TYPES",
    "time_split",
    "training_window",
    "creation_time",
    "ordered_features",
    "classification_metrics",
    "pipeline_steps",
    "scaler_moments",
]

#: The newest share of rows (by timestamp) held out to measure a model.
VALIDATION_SHARE = 0.2

#: The types of ``DictVectorizer → StandardScaler`` in a pipeline, and of the data inside them and
#: a LogisticRegression, as skops names them. skops 0.16 already trusts *every* scikit-learn
#: estimator and numpy ufunc by default, and its ``trusted=`` argument can only widen that; so each
#: model's ``TRUSTED_TYPES`` is this plus its classifier, read off a dump of a trained pipeline (a
#: test keeps each exact), and nothing outside it is ever built.
PIPELINE_TYPES: tuple[str, ...] = (
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


def time_split(n: int, timestamps: Sequence[float] | None, model: str) -> tuple[list[int], list[int]]:
    """Row indices to train on and to validate on: the newest :data:`VALIDATION_SHARE` by
    ``timestamps`` (by row order when there are none; ties keep row order) are held out.
    Raises :class:`ValueError` naming the ``model`` when ``n`` rows are too few for both parts."""
    n_validation = round(n * VALIDATION_SHARE)
    if n_validation < 1 or n - n_validation < 2:
        raise ValueError(f"{n} rows are too few to train and validate a {model}")
    if timestamps is None:
        order = list(range(n))
    else:
        order = sorted(range(n), key=timestamps.__getitem__)  # stable: ties keep row order
    return order[: n - n_validation], order[n - n_validation :]


def training_window(timestamps: Sequence[float] | None) -> dict[str, str] | None:
    """``{"start", "end"}`` of the training data as ISO UTC times; ``None`` without timestamps."""
    if timestamps is None:
        return None
    return {
        "start": datetime.fromtimestamp(min(timestamps), UTC).isoformat(),
        "end": datetime.fromtimestamp(max(timestamps), UTC).isoformat(),
    }


def creation_time(created_at: float | None) -> float:
    """``created_at`` as a float, or now."""
    return time.time() if created_at is None else float(created_at)


def ordered_features(names: Collection[str]) -> tuple[str, ...]:
    """The feature names a card lists: the base features in ``FEATURE_NAMES`` order, then the others
    (plugins' features) sorted."""
    known = [name for name in FEATURE_NAMES if name in names]
    return (*known, *sorted(set(names) - set(known)))


def classification_metrics(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """``roc_auc``, ``log_loss`` and ``brier`` of probabilities ``p`` for 0/1 labels ``y_true``."""
    return {
        "roc_auc": float(roc_auc_score(y_true, p)),
        "log_loss": float(log_loss(y_true, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, p)),
    }


def pipeline_steps(
    pipeline: object, kind: str, classifier_type: type
) -> tuple[DictVectorizer, StandardScaler, object]:
    """The three fitted steps of a ``DictVectorizer → StandardScaler → classifier_type`` pipeline.
    Raises :class:`TypeError` naming the ``kind`` of pipeline expected and what was found."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 3:
        raise TypeError(f"expected a 3-step {kind} Pipeline, got {type(pipeline).__name__}")
    vectorizer, scaler, classifier = (step for _, step in pipeline.steps)
    if not (
        isinstance(vectorizer, DictVectorizer)
        and isinstance(scaler, StandardScaler)
        and isinstance(classifier, classifier_type)
    ):
        raise TypeError(
            f"expected DictVectorizer → StandardScaler → {classifier_type.__name__}, got "
            + " → ".join(type(step).__name__ for _, step in pipeline.steps)
        )
    return vectorizer, scaler, classifier


def scaler_moments(scaler: StandardScaler, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The scaler's ``(mean, scale)``, zeros and ones where it does not centre or scale: coefficients
    ``w`` on scaled inputs are ``w / scale`` on raw ones, with ``− (w / scale) · mean`` in the intercept."""
    mean = scaler.mean_ if scaler.with_mean else np.zeros(n_features)
    scale = scaler.scale_ if scaler.with_std else np.ones(n_features)
    return mean, scale
