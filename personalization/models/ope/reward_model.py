"""The reward model q̂(x, a) of the doubly robust estimator, cross-fitted over folds.

q̂ for a logged row is always predicted by a model fitted on the *other* folds, so its errors are
independent of that row's reward. The default model is the policy's own representation
(:func:`personalization.decision.policy.action_features`); any :data:`RewardEstimator` can replace it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from personalization.models.ope.data import Context
from personalization.decision.policy import action_features
from personalization.models.policy import build_reward_pipeline, predict_rewards

__all__ = ["RewardEstimator", "fit_predict_rewards", "cross_fitted_rewards"]

#: ``(train_contexts, train_actions, train_rewards, predict_contexts, n_actions) → q̂`` with
#: ``q̂[j, a]`` = predicted reward of variant a for ``predict_contexts[j]``; the default is
#: :func:`fit_predict_rewards`.
RewardEstimator = Callable[
    [Sequence[Context], np.ndarray, np.ndarray, Sequence[Context], int], np.ndarray
]


def fit_predict_rewards(
    train_contexts: Sequence[Context],
    train_actions: np.ndarray,
    train_rewards: np.ndarray,
    predict_contexts: Sequence[Context],
    n_actions: int,
    *,
    random_state: int = 0,
) -> np.ndarray:
    """q̂[j, a]: the default reward model for DR, fitted on the training rows.

    The policy's own representation
    (:func:`personalization.decision.policy.action_features`: features, the variant one-hot and
    features × variant) through DictVectorizer → StandardScaler → a
    LogisticRegression for 0/1 rewards, or a Ridge regression for other rewards; a constant when the
    training rewards are all equal.
    """
    y = np.asarray(train_rewards, dtype=np.float64)
    m, k = len(predict_contexts), n_actions
    if np.all(y == y[0]):
        return np.full((m, k), float(y[0]))
    rows = [action_features(x, int(a)) for x, a in zip(train_contexts, train_actions)]
    if np.isin(y, (0.0, 1.0)).all():
        model = build_reward_pipeline(random_state)
        model.fit(rows, y.astype(np.int64))
        return predict_rewards(model, predict_contexts, k)
    grid = [action_features(x, a) for x in predict_contexts for a in range(k)]
    model = Pipeline(
        [
            ("vectorize", DictVectorizer(sparse=False)),
            ("scale", StandardScaler()),
            ("regress", Ridge(alpha=1.0)),
        ]
    )
    model.fit(rows, y)
    return np.asarray(model.predict(grid), dtype=np.float64).reshape(m, k)


def cross_fitted_rewards(
    contexts: Sequence[Context],
    actions: np.ndarray,
    rewards: np.ndarray,
    n_actions: int,
    estimator: RewardEstimator,
    n_folds: int,
    random_state: int,
) -> np.ndarray:
    """q̂ for every row from a model fitted on the other folds (KFold shuffled by random_state)."""
    n = len(contexts)
    q = np.empty((n, n_actions), dtype=np.float64)
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    for train, held in folds.split(np.arange(n)):
        predicted = estimator(
            [contexts[i] for i in train],
            actions[train],
            rewards[train],
            [contexts[i] for i in held],
            n_actions,
        )
        predicted = np.asarray(predicted, dtype=np.float64)
        if predicted.shape != (held.size, n_actions) or not np.isfinite(predicted).all():
            raise ValueError(
                f"the reward model returned shape {predicted.shape} (or non-finite values); "
                f"expected finite ({held.size}, {n_actions})"
            )
        q[held] = predicted
    return q
