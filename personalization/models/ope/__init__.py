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

The package's modules, one job each (their public names are re-exported here)::

    data.py          LoggedBandit (x, a, p, r), column names, the errors below
    files.py         reading logged-bandit tables; writing and reading π(a | x_i)
    reward_model.py  q̂ for DR, cross-fitted
    estimators.py    evaluate_policy: IPS, SNIPS, DR, bootstrap intervals, ESS, warnings

Errors::

    LoggedDataError               a logged-bandit file cannot be read: names file, row, column
     └── ParquetUnavailableError a .parquet file, but pyarrow is not installed (an ImportError too)
"""

from __future__ import annotations

from personalization.models.ope.data import (
    ACTION_COLUMN,
    PROPENSITY_COLUMN,
    REWARD_COLUMN,
    Context,
    LoggedBandit,
    LoggedDataError,
    ParquetUnavailableError,
)
from personalization.models.ope.estimators import (
    INTERVAL_LEVEL,
    LOW_PROPENSITY,
    MIN_ESS_SHARE,
    Estimate,
    OffPolicyEstimate,
    evaluate_policy,
)
from personalization.models.ope.files import (
    read_action_probabilities,
    read_logged_bandit,
    read_logged_bandit_csv,
    read_logged_bandit_parquet,
    write_action_probabilities,
)
from personalization.models.ope.reward_model import RewardEstimator, fit_predict_rewards

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
