"""Off-policy evaluation of a registered candidate policy on logged traffic.

:mod:`personalization.models.ope` holds the estimators (IPS, SNIPS, DR, bootstrap intervals, ESS,
warnings); this module connects them to Vary's models and logs:

* :func:`target_probabilities` — π(a | x_i) for every logged row: what the candidate *would have
  served*, computed exactly as serving does (``action_probabilities`` of the reward model's
  predictions with the experience's exploration settings), so the estimate is about the policy as
  it would really run, exploration floor included.
* :func:`evaluate_candidate` — a registered policy version judged on a logged-bandit file or, by
  default, on the exposure and event streams of the experience its card names.

Errors::

    EvaluationError         the candidate cannot be evaluated on this data (the message says why)
     ├── NotAPolicyError    the version is a segment model: only policies choose variants
     └── NoLoggedTraffic    no logged decisions to evaluate on
    UnknownModelVersion     (from the registry) no such version
    InvalidInput            (personalization.errors) not the shape of a model version
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np
from redis.asyncio import Redis

from personalization.models.logged import DEFAULT_WINDOW_S, logged_bandit_from_streams
from personalization.models.registry import ModelRegistry
from personalization.models.versions import check_version
from personalization.models.ope import (
    LoggedBandit,
    LoggedDataError,
    OffPolicyEstimate,
    evaluate_policy,
    read_logged_bandit,
)
from personalization.decision.policy import CompiledRewardModel, action_probabilities
from personalization.models.policy import PolicyCard
from personalization.types import Experience

__all__ = [
    "TIMESTAMP_COLUMNS",
    "EvaluationError",
    "NotAPolicyError",
    "NoLoggedTraffic",
    "stand_in_experience",
    "target_probabilities",
    "read_logged_file",
    "evaluate_logged",
    "evaluate_candidate",
    "evaluate_served",
]

#: Columns of a logged-bandit file that are bookkeeping, not context features.
TIMESTAMP_COLUMNS: tuple[str, ...] = ("ts",)


class EvaluationError(ValueError):
    """The candidate cannot be evaluated on this data; the message says why and what to do."""


class NotAPolicyError(EvaluationError):
    """The version is a segment model: only a bandit policy chooses variants, so only it has a value."""


class NoLoggedTraffic(EvaluationError):
    """No logged decisions (with a visitor id) for the experience: nothing to evaluate on."""


def stand_in_experience(card: PolicyCard) -> Experience:
    """An experience with the policy's variant count and the default bandit settings.

    For evaluating on a file when the experience is not (or no longer) in the content: the
    candidate's probabilities then use the defaults (Thompson sampling, floor 0.05), which is what an
    experience gets unless its entry sets them.
    """
    key = card.experience or card.version
    k = card.n_actions
    return Experience(
        id=key,
        key=key,
        name=key,
        type="bandit",
        variants=tuple(f"variant-{a}" for a in range(1, k)),
        weights=tuple(1.0 / k for _ in range(k)),
    )


def _check_shape(policy: CompiledRewardModel, experience: Experience, n_actions: int | None = None) -> None:
    k = len(experience.variants) + 1
    if policy.n_actions != k:
        raise EvaluationError(
            f"policy {policy.version} scores {policy.n_actions} variants but experience "
            f"{experience.key!r} has {k} (control + {k - 1}); retrain the policy for the experience as it is now"
        )
    if n_actions is not None and n_actions != k:
        raise EvaluationError(f"the logged data has {n_actions} variants, the experience {k}")


def target_probabilities(
    policy: CompiledRewardModel, logged: LoggedBandit, experience: Experience
) -> np.ndarray:
    """π(a | x_i): the candidate's serving distribution for every logged row, an (n × k) array.

    Row i is ``action_probabilities(policy.predict(x_i), experience.bandit_method, epsilon=…,
    min_probability=…)`` — the very call serving makes for a visitor with context x_i.
    """
    _check_shape(policy, experience, logged.n_actions)
    out = np.empty((len(logged), logged.n_actions), dtype=np.float64)
    for i, context in enumerate(logged.contexts):
        out[i] = action_probabilities(
            policy.predict(context),
            experience.bandit_method,
            epsilon=experience.epsilon,
            min_probability=experience.min_probability,
        )
    return out


def read_logged_file(path: Path | str, n_actions: int) -> LoggedBandit:
    """A logged-bandit file (CSV or Parquet) for a policy over ``n_actions`` variants.

    A ``ts`` column, when present, is bookkeeping and is not read as a context feature.
    """
    try:
        return read_logged_bandit(path, n_actions=n_actions, ignore=TIMESTAMP_COLUMNS)
    except LoggedDataError:
        raise
    except (ValueError, OSError) as exc:
        raise LoggedDataError(f"{path}: {exc}") from exc


def evaluate_logged(
    policy: CompiledRewardModel,
    logged: LoggedBandit,
    experience: Experience,
    *,
    n_bootstrap: int = 500,
    clip: float | None = None,
) -> tuple[OffPolicyEstimate, np.ndarray]:
    """The estimate and the candidate's probabilities for ``logged`` (blocking: run it in a thread)."""
    if len(logged) == 0:
        raise NoLoggedTraffic(f"no logged decisions for experience {experience.key!r}")
    target = target_probabilities(policy, logged, experience)
    try:
        estimate = evaluate_policy(logged, target, clip=clip, n_bootstrap=n_bootstrap)
    except ValueError as exc:  # too few usable rows, bad settings: say so, do not crash
        raise EvaluationError(f"cannot evaluate policy {policy.version}: {exc}") from exc
    return estimate, target


async def evaluate_candidate(
    redis: Redis | None,
    registry: ModelRegistry,
    version: str,
    experience: Experience | None,
    *,
    data_path: Path | str | None = None,
    n_bootstrap: int = 500,
    clip: float | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    partitions: int = 1,
) -> OffPolicyEstimate:
    """What registered policy ``version`` would have earned on logged traffic.

    With ``data_path``: on that logged-bandit file (``experience`` may be ``None``: then
    :func:`stand_in_experience`). Otherwise on the streams: one row per visitor exposed to the
    experience the policy's card names (see :func:`~personalization.models.logged.logged_bandit_from_streams`),
    which needs ``experience`` — its goals say what a reward is. Raises :class:`NotAPolicyError`,
    :class:`NoLoggedTraffic`, :class:`EvaluationError`, or the registry's ``UnknownModelVersion``.
    """
    model = await registry.get(check_version(version))  # a malformed version: InvalidInput (400)
    card = model.card
    if not isinstance(card, PolicyCard):
        raise NotAPolicyError(
            f"{version} is a segment model; only bandit policies choose variants, so only they can "
            "be evaluated off-policy"
        )
    if experience is not None and card.experience and experience.key != card.experience:
        raise EvaluationError(
            f"policy {version} was trained for experience {card.experience!r}, not {experience.key!r}"
        )
    policy = await registry.load(version)
    assert isinstance(policy, CompiledRewardModel)
    if data_path is not None:
        target_experience = experience or stand_in_experience(card)
        logged = await anyio.to_thread.run_sync(read_logged_file, data_path, card.n_actions)
    else:
        if experience is None:
            raise EvaluationError(
                f"experience {card.experience!r} of policy {version} is not in the current content; "
                "its definition (goals, variants) is needed to read rewards from the logs"
            )
        if redis is None:
            raise EvaluationError("reading the logs needs Redis")
        target_experience = experience
        _check_shape(policy, experience)
        logged = await logged_bandit_from_streams(redis, experience, window_s, partitions=partitions)
        if len(logged) == 0:
            raise NoLoggedTraffic(
                f"no logged exposures of experience {experience.key!r} with a visitor id: nothing to "
                f"evaluate policy {version} on yet"
            )

    def run() -> OffPolicyEstimate:
        estimate, _ = evaluate_logged(policy, logged, target_experience, n_bootstrap=n_bootstrap, clip=clip)
        return estimate

    return await anyio.to_thread.run_sync(run)


async def evaluate_served(
    redis: Redis,
    registry: ModelRegistry,
    version: str,
    experiences: Mapping[str, Experience],
    **options: Any,
) -> tuple[OffPolicyEstimate, str | None]:
    """:func:`evaluate_candidate` on the streams, for the experience the policy's card names,
    looked up in ``experiences`` (the served content's); returns the estimate and that key. One
    place for the API route and the dashboard, which evaluate the same way. ``options`` go to
    :func:`evaluate_candidate` (``n_bootstrap``, ``clip``, ``partitions`` …); raises what it does."""
    card = (await registry.get(check_version(version))).card
    key = card.experience if isinstance(card, PolicyCard) else None
    experience = experiences.get(key) if key else None
    return await evaluate_candidate(redis, registry, version, experience, **options), key
