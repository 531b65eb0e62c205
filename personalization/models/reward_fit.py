"""Fitting a bandit's reward model so it holds at many variants and under a biased logging policy.

:func:`fit_reward_pipeline` fits the reward pipeline of :mod:`personalization.models.policy` on the
:func:`~personalization.decision.policy.action_features` rows (context × variant crosses, the shared
part being the uncrossed features) and chooses how, from the data:

* **Sparse rows.** 50 variants × 20 features is ~1,000 columns of which ~40 are non-zero per row;
  the vectorizer is sparse and the scaler only scales (no centring, which would densify; the
  unpenalised intercept absorbs the centre, so the fitted model is the same), so 100k rows train in
  seconds on one core.
* **Regularisation and weighting by time-ordered cross-validation.** The training rows, oldest first,
  are cut in two and the newer half into :data:`CV_FOLDS` blocks; each block is scored by a model of
  every older row (forward chaining: a model is always judged on rows newer than the ones it saw, as
  in production; each fold's model sees at least half the rows, so the penalty it picks suits the
  final model's size).
  Every ``C`` in :data:`C_GRID` and both weightings are scored by their out-of-fold loss; the
  lowest wins, the unweighted fit first when it is within one standard error (:func:`_choose`).
  The grid starts at C = 0.1:
  below it, seeded worlds show log loss preferring a penalty that shrinks the per-variant effects
  to nothing, and the greedy policy losing up to half its value (100 variants, 10,000 rows: relative
  position 0.36 at C = 0.001 against 0.69 at C = 1) — probability accuracy and ranking accuracy want
  different penalties, and the policy lives on ranking; the calibration step then repairs the
  probabilities of a lightly penalised model.
* **Importance weights against a biased logging policy.** A logging policy that favoured some
  variants shows them more often, so an unweighted fit spends its capacity where the logs are dense.
  Rows weighted by 1/(k·p) (clipped at :data:`MAX_WEIGHT`, normalised to mean 1) are what the data would
  look like under uniform assignment. The validation loss is ALWAYS weighted that way (the loss a
  policy choosing among all variants cares about); the *training* weighting is a candidate like C,
  because when the model is well specified the unweighted fit is unbiased too and has less variance
  — cross-validation decides, on the target that matters.
* **Calibrated probabilities** (:func:`calibrate`). Platt scaling (P = σ(a·z + b) on the model's
  logit z) of the FINAL model on the held-out newest rows, importance-weighted like the validation
  loss (so it calibrates for uniform assignment, not for the logging policy's mix), applied only
  when a or b is more than two standard errors from the identity, and folded into the classifier's
  coefficients (``coef ← a·coef``, ``intercept ← a·intercept + b``), so the stored pipeline, its
  ``predict_proba`` and the compiled serving path all give the calibrated probability. a > 0 keeps
  every context's ranking of variants, so calibration never changes the greedy policy. (Platt on the
  cross-validation folds' predictions was tried and rejected: their smaller models are more
  confident than the final one, and the map they teach bends a calibrated model.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["C_GRID", "CV_FOLDS", "MAX_WEIGHT", "FitChoice", "importance_weights", "fit_reward_pipeline", "calibrate"]

#: Inverse L2 strengths tried (on standardised columns).
C_GRID: tuple[float, ...] = (0.1, 1.0, 10.0)
#: Forward-chaining folds of the time-ordered training rows.
CV_FOLDS = 3
#: Importance weights 1/(k·p) are clipped here (p < 1/(20k) counts as 1/(20k)): bounded variance.
MAX_WEIGHT = 20.0
#: Fewer training rows than this: no cross-validation, the defaults (C = 1, unweighted, uncalibrated).
MIN_CV_ROWS = 400


@dataclass(frozen=True, slots=True)
class FitChoice:
    """What cross-validation chose: ``C``, the training ``weighting`` (``"none"`` or ``"ipw"``) and
    its mean weighted validation log loss (``None`` without cross-validation)."""

    C: float
    weighting: str
    cv_log_loss: float | None


def importance_weights(actions: np.ndarray, propensities: Sequence[float] | None, n_actions: int) -> np.ndarray | None:
    """1/(k·p) per row, clipped to [1/MAX_WEIGHT, MAX_WEIGHT] and normalised to mean 1; rows whose
    propensity is missing, 0 or above 1 count 1. ``None`` without propensities."""
    if propensities is None:
        return None
    p = np.asarray(propensities, dtype=np.float64)
    if p.shape != actions.shape:
        raise ValueError(f"{p.size} propensities for {actions.size} rows")
    known = np.isfinite(p) & (p > 0.0) & (p <= 1.0)
    weights = np.ones_like(p)
    weights[known] = np.clip(1.0 / (n_actions * p[known]), 1.0 / MAX_WEIGHT, MAX_WEIGHT)
    return weights / weights.mean()


def _classifier(C: float, random_state: int) -> LogisticRegression:
    return LogisticRegression(C=C, max_iter=1000, random_state=random_state)


def _blocks(n: int) -> list[tuple[slice, slice]]:
    """(train, validate) slices of forward-chaining CV over n time-ordered rows: the newest half is
    cut into CV_FOLDS blocks, each validated by a model of every older row (≥ half the rows, so the
    chosen penalty suits a model of about the final size)."""
    edges = np.linspace(n / 2, n, CV_FOLDS + 1).round().astype(int)
    return [(slice(0, edges[i]), slice(edges[i], edges[i + 1])) for i in range(CV_FOLDS)]


def _choose(
    out_of_fold: dict[tuple[float, str], np.ndarray], y: np.ndarray, weights: np.ndarray
) -> tuple[float, str, float | None]:
    """(C, weighting, loss): the lowest weighted out-of-fold loss, unweighted first when close.

    Among the settings whose weighted per-row loss is within one paired standard error of the best,
    the unweighted ones come first (less variance when the model is well specified), then the lowest
    loss. Defaults (C = 1, unweighted, loss unknown) without cross-validation.
    """
    if not out_of_fold:
        return 1.0, "none", None
    scale = weights / weights.mean()
    rows = {key: (np.logaddexp(0.0, z) - y * z) * scale for key, z in out_of_fold.items()}
    best = min(rows, key=lambda key: float(rows[key].mean()))
    close = []
    for key, losses in rows.items():
        difference = losses - rows[best]
        standard_error = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
        if float(difference.mean()) <= standard_error:
            close.append(key)
    C, name = min(close, key=lambda key: (key[1] != "none", float(rows[key].mean())))
    return C, name, float(rows[(C, name)].mean())


def _platt(z: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(a, b) of P = σ(a·z + b) by weighted maximum likelihood; (1, 0) when the fit is degenerate."""
    if len(set(y.tolist())) < 2:
        return 1.0, 0.0
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), y, sample_weight=weights)
    a, b = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    return (a, b) if a > 0.0 and np.isfinite(a) and np.isfinite(b) else (1.0, 0.0)


def fit_reward_pipeline(
    rows: Sequence[dict[str, float | str]],
    y: np.ndarray,
    weights: np.ndarray | None,
    random_state: int = 0,
) -> tuple[Pipeline, FitChoice]:
    """Fit ``DictVectorizer → StandardScaler → LogisticRegression`` on time-ordered ``rows``.

    ``weights`` are :func:`importance_weights` (or ``None``). Returns the fitted pipeline (not yet
    calibrated: :func:`calibrate` does that on held-out rows) and what was chosen.
    """
    vectorizer = DictVectorizer(sparse=True)
    scaler = StandardScaler(with_mean=False)
    matrix = sparse.csr_matrix(scaler.fit_transform(vectorizer.fit_transform(rows)))
    n = matrix.shape[0]
    target = np.ones(n) if weights is None else weights
    schemes = {"none": None} if weights is None else {"none": None, "ipw": weights}
    folds = [(t, v) for t, v in _blocks(n) if len(set(y[t].tolist())) == 2 and v.stop > v.start]
    validated = np.concatenate([np.arange(n)[v] for _, v in folds]) if folds else np.arange(0)
    out_of_fold: dict[tuple[float, str], np.ndarray] = {}
    if n >= MIN_CV_ROWS and folds:
        for name, scheme in schemes.items():
            for C in C_GRID:
                logits = []
                for train, valid in folds:
                    clf = _classifier(C, random_state).fit(
                        matrix[train], y[train], sample_weight=None if scheme is None else scheme[train]
                    )
                    logits.append(clf.decision_function(matrix[valid]))
                out_of_fold[(C, name)] = np.concatenate(logits)
    C, name, loss = _choose(out_of_fold, y[validated], target[validated])
    classifier = _classifier(C, random_state).fit(matrix, y, sample_weight=schemes[name])
    pipeline = Pipeline([("vectorize", vectorizer), ("scale", scaler), ("classify", classifier)])
    return pipeline, FitChoice(C=C, weighting=name, cv_log_loss=loss)


def calibrate(
    pipeline: Pipeline, rows: Sequence[dict[str, float | str]], y: np.ndarray, weights: np.ndarray | None
) -> tuple[float, float]:
    """Platt-calibrate a fitted reward pipeline on held-out ``rows`` and fold (a, b) into it.

    Fitted with the importance ``weights`` (uniform assignment is the target) and applied only when
    the model is measurably off: |a − 1| or |b| beyond two standard errors (the weighted fit's
    sandwich variance), so a calibrated model is left exactly as it is. Returns (a, b); (1, 0) = unchanged.
    """
    classifier = pipeline.steps[-1][1]
    z = np.asarray(pipeline.decision_function(rows), dtype=np.float64)
    w = np.ones_like(z) if weights is None else weights / weights.mean()
    a, b = _platt(z, y, w)
    design = np.column_stack([z, np.ones_like(z)])
    p = 1.0 / (1.0 + np.exp(-(a * z + b)))
    variance = p * (1.0 - p)
    hessian = design.T @ (design * (w * variance)[:, None])
    meat = design.T @ (design * (w * w * variance)[:, None])
    try:
        bread = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return 1.0, 0.0
    se_a, se_b = np.sqrt(np.diag(bread @ meat @ bread))  # the weighted fit's sandwich
    if abs(a - 1.0) <= 2.0 * se_a and abs(b) <= 2.0 * se_b:
        return 1.0, 0.0
    classifier.coef_ = classifier.coef_ * a
    classifier.intercept_ = classifier.intercept_ * a + b
    return a, b
