"""Off-policy evaluation: what would a candidate policy have earned, judged on logs of another one?

Every decision Vary serves is logged as (x, a, p, r): the visitor's features, the variant shown, the
probability the serving policy had of showing it (``Decision.propensity``) and the reward. From such
logs, and the candidate policy's probabilities π(a | x_i) for each logged row,
:func:`evaluate_policy` estimates the candidate's value three ways (as Open Bandit Pipeline's
``obp.ope`` does), with w_i = π(a_i | x_i) / p_i, optionally clipped at M:

* IPS: V̂ = (1/n) Σ w_i r_i — unbiased when every p_i > 0 where π is; high variance for large w.
* SNIPS: V̂ = Σ w_i r_i / Σ w_i — slightly biased, much steadier, always within the reward range.
* DR: V̂ = (1/n) Σ [Σ_a π(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i))] — unbiased if either the
  propensities or the reward model q̂ are right; q̂ for row i is fitted on the *other* folds
  (cross-fitting), so its errors are independent of row i's reward.

Each comes with a 95% percentile-bootstrap interval over logged rows (seeded; q̂ is held fixed,
as in ``obp``), beside the logging policy's own value (mean reward) for comparison, the effective
sample size (Σw)² / Σw², and warnings that say when not to trust the numbers.

Files: :func:`read_logged_bandit` reads the (x, a, p, r) table Vowpal Wabbit / Open Bandit Pipeline
exports are easily turned into (CSV now; Parquet when ``pyarrow`` is installed), and
:func:`write_action_probabilities` writes π(a | x_i) so any outside tool can recompute an estimate.

Errors::

    LoggedDataError               a logged-bandit file cannot be read: names file, row, column
     └── ParquetUnavailableError a .parquet file, but pyarrow is not installed (an ImportError too)
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import msgspec
import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from personalization.models.policy import action_features, build_reward_pipeline, predict_rewards

__all__ = [
    "ACTION_COLUMN",
    "PROPENSITY_COLUMN",
    "REWARD_COLUMN",
    "LOW_PROPENSITY",
    "MIN_ESS_SHARE",
    "INTERVAL_LEVEL",
    "Context",
    "LoggedBandit",
    "Estimate",
    "OffPolicyEstimate",
    "RewardEstimator",
    "LoggedDataError",
    "ParquetUnavailableError",
    "read_logged_bandit",
    "read_logged_bandit_csv",
    "read_logged_bandit_parquet",
    "fit_predict_rewards",
    "evaluate_policy",
    "write_action_probabilities",
    "read_action_probabilities",
]

Context = dict[str, float | str]

#: Column names of a logged-bandit table; every other column is a context feature.
ACTION_COLUMN = "action"
PROPENSITY_COLUMN = "propensity"
REWARD_COLUMN = "reward"
_REQUIRED = (ACTION_COLUMN, PROPENSITY_COLUMN, REWARD_COLUMN)

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

#: ``(train_contexts, train_actions, train_rewards, predict_contexts, n_actions) → q̂`` with
#: ``q̂[j, a]`` = predicted reward of variant a for ``predict_contexts[j]``; the default is
#: :func:`fit_predict_rewards`.
RewardEstimator = Callable[
    [Sequence[Context], np.ndarray, np.ndarray, Sequence[Context], int], np.ndarray
]


class LoggedDataError(ValueError):
    """A logged-bandit file or table cannot be read. The message names the file, row and column."""


class ParquetUnavailableError(LoggedDataError, ImportError):
    """A ``.parquet`` log was given but ``pyarrow`` is not installed: install it or export CSV."""


# ---------------------------------------------------------------------------------------------------
# Data


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


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    """A policy value and its bootstrap interval ``(low, high)`` at :data:`INTERVAL_LEVEL`."""

    value: float
    interval: tuple[float, float]


class OffPolicyEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """The candidate policy's value estimated three ways, the logging policy's value, diagnostics.

    ``n`` rows were used (``dropped`` had a missing or zero propensity); ``ess`` = (Σw)²/Σw² of the
    (clipped) weights; ``clipped`` weights were above the clip; ``warnings`` say when not to trust
    the numbers.
    """

    ips: Estimate
    snips: Estimate
    dr: Estimate
    logged: Estimate
    ess: float
    n: int
    clipped: int
    dropped: int = 0
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------
# Reading logged-bandit files


def _where(source: object, row: int, line: int | None) -> str:
    return f"{source}: row {row}" + (f" (line {line})" if line is not None else "")


def _number(value: object, where: str, column: str) -> float | None:
    """A cell as a float; ``None`` when empty or missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            message = f"{where}, column {column!r}: {value!r} is not a number"
            raise LoggedDataError(message) from None
    raise LoggedDataError(f"{where}, column {column!r}: {value!r} is not a number")


def _is_number_text(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _check_columns(source: object, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise LoggedDataError(f"{source}: column {name!r} appears twice in the header")
        seen.add(name)
    missing = [c for c in _REQUIRED if c not in seen]
    if missing:
        raise LoggedDataError(
            f"{source}: missing column(s) {missing}; found {list(names)}. A logged-bandit table "
            f"has one column per context feature plus {list(_REQUIRED)}"
        )


def _assemble(
    source: object,
    names: Sequence[str],
    records: Sequence[tuple[str, Sequence[object]]],
    numeric: Collection[str],
    n_actions: int | None,
    ignore: Collection[str],
) -> LoggedBandit:
    """Rows of cells → :class:`LoggedBandit`; ``numeric`` names the context columns of numbers."""
    index = {name: i for i, name in enumerate(names)}
    features = [n for n in names if n not in _REQUIRED and n not in ignore]
    contexts: list[Context] = []
    actions: list[int] = []
    propensities: list[float] = []
    rewards: list[float] = []
    for where, cells in records:
        raw = cells[index[ACTION_COLUMN]]
        value = _number(raw, where, ACTION_COLUMN)
        if value is None or not math.isfinite(value) or value != int(value):
            raise LoggedDataError(
                f"{where}, column {ACTION_COLUMN!r}: {raw!r} is not a variant index (0, 1, 2, …)"
            )
        action = int(value)
        if action < 0 or (n_actions is not None and action >= n_actions):
            bound = f"[0, {n_actions})" if n_actions is not None else "≥ 0"
            raise LoggedDataError(
                f"{where}, column {ACTION_COLUMN!r}: variant {action} is not in {bound}"
            )
        raw = cells[index[PROPENSITY_COLUMN]]
        p = _number(raw, where, PROPENSITY_COLUMN)
        if p is None or math.isnan(p):
            p = math.nan  # missing: evaluate_policy drops and reports it
        elif not 0.0 <= p <= 1.0:
            raise LoggedDataError(
                f"{where}, column {PROPENSITY_COLUMN!r}: {raw!r} is not in [0, 1]"
            )
        raw = cells[index[REWARD_COLUMN]]
        r = _number(raw, where, REWARD_COLUMN)
        if r is None or not math.isfinite(r):
            raise LoggedDataError(
                f"{where}, column {REWARD_COLUMN!r}: {raw!r} is not a reward (a number)"
            )
        context: Context = {}
        for name in features:
            cell = cells[index[name]]
            if name in numeric:
                number = _number(cell, where, name)
                if number is not None and not math.isnan(number):
                    context[name] = number
            elif cell is not None:
                text = str(cell).strip()
                if text:
                    context[name] = text
        contexts.append(context)
        actions.append(action)
        propensities.append(p)
        rewards.append(r)
    if not contexts:
        raise LoggedDataError(f"{source}: no logged rows")
    k = n_actions if n_actions is not None else max(actions) + 1
    return LoggedBandit(
        contexts=contexts,
        actions=np.asarray(actions, dtype=np.int64),
        propensities=np.asarray(propensities, dtype=np.float64),
        rewards=np.asarray(rewards, dtype=np.float64),
        n_actions=k,
    )


def read_logged_bandit_csv(
    path: Path | str, *, n_actions: int | None = None, ignore: Collection[str] = ()
) -> LoggedBandit:
    """Read a CSV of logged decisions: a header, then one row per decision.

    Columns ``action`` (variant index), ``propensity`` (empty = missing) and ``reward``; every other
    column (except those in ``ignore``, e.g. an id or timestamp) is a context feature: a column
    whose non-empty cells all parse as finite numbers is read as floats, any other as strings, and
    an empty cell is an absent feature. ``n_actions`` defaults to the largest logged action + 1.
    Raises :class:`LoggedDataError` naming the row (1 = first data row), its line and the column.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise LoggedDataError(f"{path}: empty file, expected a header row")
            names = [name.strip() for name in header]
            _check_columns(path, names)
            records: list[tuple[str, list[str]]] = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                where = _where(path, len(records) + 1, reader.line_num)
                if len(row) != len(names):
                    message = f"{where}: {len(row)} fields, the header has {len(names)}"
                    raise LoggedDataError(message)
                records.append((where, row))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LoggedDataError(f"{path}: cannot read: {exc}") from exc
    numeric = {
        name
        for j, name in enumerate(names)
        if name not in _REQUIRED
        and all(_is_number_text(cells[j]) for _, cells in records if cells[j].strip())
    }
    return _assemble(path, names, records, numeric, n_actions, set(ignore))


def read_logged_bandit_parquet(
    path: Path | str, *, n_actions: int | None = None, ignore: Collection[str] = ()
) -> LoggedBandit:
    """Read a Parquet table with the columns of :func:`read_logged_bandit_csv` (needs ``pyarrow``).

    Context columns keep their Parquet types: numbers and booleans → float, anything else → str;
    null (and NaN) → absent. Raises :class:`ParquetUnavailableError` when pyarrow is not installed.
    """
    path = Path(path)
    try:
        import pyarrow.parquet as pq  # optional dependency: only this path needs it
        import pyarrow.types as pa_types
    except ImportError as exc:
        raise ParquetUnavailableError(
            f"{path}: reading Parquet needs pyarrow, which is not installed; "
            "install pyarrow or export the log as CSV"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several kinds (OSError, ArrowInvalid) for one meaning
        raise LoggedDataError(f"{path}: cannot read as Parquet: {exc}") from exc
    names = list(table.column_names)
    _check_columns(path, names)
    numeric = {
        field.name
        for field in table.schema
        if pa_types.is_integer(field.type)
        or pa_types.is_floating(field.type)
        or pa_types.is_boolean(field.type)
    }
    columns = [table.column(name).to_pylist() for name in names]
    records = [
        (_where(path, i + 1, None), [column[i] for column in columns])
        for i in range(table.num_rows)
    ]
    return _assemble(path, names, records, numeric, n_actions, set(ignore))


def read_logged_bandit(
    path: Path | str, *, n_actions: int | None = None, ignore: Collection[str] = ()
) -> LoggedBandit:
    """Read logged decisions from ``.csv`` or ``.parquet`` (by suffix; see the two readers)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_logged_bandit_csv(path, n_actions=n_actions, ignore=ignore)
    if suffix in (".parquet", ".pq"):
        return read_logged_bandit_parquet(path, n_actions=n_actions, ignore=ignore)
    shown = suffix or "(no suffix)"
    raise LoggedDataError(f"{path}: unknown format {shown!r}; use .csv or .parquet")


# ---------------------------------------------------------------------------------------------------
# Writing target probabilities


def _check_target(
    target_probs: np.ndarray, n: int | None = None, k: int | None = None
) -> np.ndarray:
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


def write_action_probabilities(path: Path | str, target_probs: np.ndarray) -> None:
    """Write π(a | x_i) as CSV: header ``p_0, p_1, …``, one row per logged row, floats as repr."""
    probs = _check_target(target_probs)
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"p_{a}" for a in range(probs.shape[1])])
        writer.writerows([repr(float(v)) for v in row] for row in probs)


def read_action_probabilities(path: Path | str) -> np.ndarray:
    """Read a file written by :func:`write_action_probabilities` back into an (n × k) array."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if not header or header != [f"p_{a}" for a in range(len(header))]:
            raise LoggedDataError(f"{path}: expected a header p_0, p_1, …, got {header}")
        rows = []
        for row in reader:
            where = _where(path, len(rows) + 1, reader.line_num)
            if len(row) != len(header):
                raise LoggedDataError(f"{where}: {len(row)} fields, the header has {len(header)}")
            values = []
            for name, cell in zip(header, row):
                value = _number(cell, where, name)
                if value is None:
                    raise LoggedDataError(f"{where}, column {name!r}: empty")
                values.append(value)
            rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))


# ---------------------------------------------------------------------------------------------------
# The reward model for DR


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

    The policy's own representation (:func:`personalization.models.policy.action_features`: features, the
    variant one-hot and features × variant) through DictVectorizer → StandardScaler → a
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


def _cross_fitted_rewards(
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


# ---------------------------------------------------------------------------------------------------
# Evaluation


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
    target = _check_target(target_probs, len(logged), k)
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
    q = _cross_fitted_rewards(contexts, actions, r, k, estimator, n_folds, random_state)
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
