"""Logged decisions (x, a, p, r) as one checked value, and the errors of reading them.

A :class:`LoggedBandit` is what every estimator of :mod:`personalization.models.ope` takes: it
checks its arrays once, on construction, so the estimators can trust them. The column names are
those of the logged-bandit tables :mod:`personalization.models.ope.files` reads.

Errors::

    LoggedDataError               a logged-bandit file cannot be read: names file, row, column
     └── ParquetUnavailableError a .parquet file, but pyarrow is not installed (an ImportError too)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ACTION_COLUMN",
    "PROPENSITY_COLUMN",
    "REWARD_COLUMN",
    "REQUIRED_COLUMNS",
    "Context",
    "LoggedBandit",
    "LoggedDataError",
    "ParquetUnavailableError",
    "check_target",
]

Context = dict[str, float | str]

#: Column names of a logged-bandit table; every other column is a context feature.
ACTION_COLUMN = "action"
PROPENSITY_COLUMN = "propensity"
REWARD_COLUMN = "reward"
REQUIRED_COLUMNS = (ACTION_COLUMN, PROPENSITY_COLUMN, REWARD_COLUMN)


class LoggedDataError(ValueError):
    """A logged-bandit file or table cannot be read. The message names the file, row and column."""


class ParquetUnavailableError(LoggedDataError, ImportError):
    """A ``.parquet`` log was given but ``pyarrow`` is not installed: install it or export CSV."""


@dataclass(frozen=True, slots=True)
class LoggedBandit:
    """Logged decisions (x_i, a_i, p_i, r_i), one per row, for a policy over ``n_actions`` variants.

    ``propensities`` may hold NaN (missing) or 0: :func:`evaluate_policy` drops and reports those
    rows.
    Arrays are converted (actions → int64, the rest → float64) and checked on construction.
    """

    contexts: list[Context]
    actions: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    n_actions: int

    def __post_init__(self) -> None:
        n = len(self.contexts)
        actions = np.asarray(self.actions)
        propensities = np.asarray(self.propensities, dtype=np.float64)
        rewards = np.asarray(self.rewards, dtype=np.float64)
        if actions.shape != (n,) or propensities.shape != (n,) or rewards.shape != (n,):
            raise ValueError(
                f"{n} contexts but actions {actions.shape}, propensities {propensities.shape}, "
                f"rewards {rewards.shape}: each must be one value per row"
            )
        if isinstance(self.n_actions, bool) or not isinstance(self.n_actions, int | np.integer):
            raise ValueError(f"n_actions must be an integer, got {self.n_actions!r}")
        if self.n_actions < 1:
            raise ValueError(f"n_actions must be ≥ 1, got {self.n_actions}")
        if n and not np.issubdtype(actions.dtype, np.integer):
            floating = np.issubdtype(actions.dtype, np.floating)
            integral = floating and bool(np.all(actions == np.round(actions)))
            if not integral:
                raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
        actions = actions.astype(np.int64)
        if n and (actions.min() < 0 or actions.max() >= self.n_actions):
            raise ValueError(
                f"actions must be in [0, {self.n_actions}), got {actions.min()}..{actions.max()}"
            )
        known = propensities[~np.isnan(propensities)]
        if known.size and (known.min() < 0.0 or known.max() > 1.0):
            raise ValueError("propensities must be in [0, 1] (NaN = missing)")
        if not np.isfinite(rewards).all():
            raise ValueError("rewards must be finite numbers")
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "propensities", propensities)
        object.__setattr__(self, "rewards", rewards)
        object.__setattr__(self, "n_actions", int(self.n_actions))

    def __len__(self) -> int:
        return len(self.contexts)


def check_target(
    target_probs: np.ndarray, n: int | None = None, k: int | None = None
) -> np.ndarray:
    """``target_probs`` as a float (rows × variants) matrix of probabilities, checked: rows sum to 1,
    and with ``n``/``k`` given, one row per logged row and one column per variant."""
    probs = np.asarray(target_probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"target_probs must be a (rows × variants) matrix, not {probs.shape}")
    if n is not None and probs.shape != (n, k):
        raise ValueError(
            f"target_probs has shape {probs.shape}, expected ({n}, {k}): one row per logged row "
            "and one column per variant (pass n_actions when reading a log in which some variants "
            "were never logged)"
        )
    if not np.isfinite(probs).all() or (probs < 0.0).any():
        raise ValueError("target_probs must be finite and non-negative")
    sums = probs.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-6)
    if bad.size:
        raise ValueError(f"target_probs row {int(bad[0])} sums to {sums[bad[0]]!r}, not 1")
    return probs
