"""``vary evaluate --model VERSION``: off-policy evaluation of a bandit policy on logged traffic.

The candidate is found locally first (``<data_dir>/policies``), else in the model registry; the
logged decisions come from ``--data FILE`` or, by default, from the exposure and event streams in
``VARY_REDIS_URL``. The estimators are :mod:`personalization.models.ope`'s; this module finds the
inputs and prints :func:`format_estimate`. scikit-learn is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from api.cli.common import NO_REDIS, err, load_experience, number, plugin_registry, table, with_redis
from api.cli.models import local_cards
from api.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from personalization.models.ope import OffPolicyEstimate
    from personalization.decision.policy import CompiledRewardModel
    from personalization.decision.segments import CompiledSegmentModel
    from personalization.models.policy import PolicyCard

__all__ = ["add_evaluate_parser", "evaluate_command", "format_estimate"]


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``evaluate`` to the ``vary`` subcommands."""
    evaluate = sub.add_parser(
        "evaluate",
        help="off-policy evaluation of a bandit policy on logged traffic (IPS, SNIPS, DR)",
    )
    evaluate.add_argument("--model", required=True, help="the policy version to evaluate")
    evaluate.add_argument("--data", help="a logged-bandit file (.csv or .parquet); default: the Redis logs")
    evaluate.add_argument("--out", help="write the candidate's action probabilities for every logged row (CSV)")
    evaluate.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples (default 500)")
    evaluate.add_argument("--clip", type=float, help="clip importance weights at this value")
    evaluate.add_argument("--window-days", type=float, default=7.0,
                          help="from the logs: a goal within this many days of the exposure is a reward (default 7)")


def _load_candidate(settings: Settings, version: str) -> tuple[CompiledRewardModel, PolicyCard] | int:
    """The policy ``version`` (compiled, and its card): from the local policy directories first,
    else the registry; or an exit code."""
    from personalization.decision.policy import CompiledRewardModel
    from personalization.models.policy import PolicyCard, compile_policy, load_policy
    from personalization.models.registry import ModelRegistry, UnknownModelVersion

    for directory, card, _ in local_cards(settings):
        if card.version != version:
            continue
        if not isinstance(card, PolicyCard):
            err(f"{version} is a segment model; only bandit policies can be evaluated off-policy")
            return 2
        pipeline, card = load_policy(directory, version)
        return compile_policy(pipeline, card), card
    if not settings.redis_url:
        err(f"no policy {version!r} under {settings.data_dir}; {NO_REDIS}, so the registry was not searched")
        return 1

    async def load(redis: Redis) -> CompiledSegmentModel | CompiledRewardModel | None:
        registry = ModelRegistry(redis)
        try:
            return await registry.load(version)
        except UnknownModelVersion:
            return None

    model = with_redis(settings, load)
    if model is None:
        err(f"no model {version!r} under {settings.data_dir} or in the registry")
        return 1
    if not isinstance(model, CompiledRewardModel):
        err(f"{version} is a segment model; only bandit policies can be evaluated off-policy")
        return 2
    return model, model.card


def format_estimate(estimate: OffPolicyEstimate) -> str:
    """The estimate as a table: estimator, value, 95% interval; then ESS, clipping and warnings."""
    rows = []
    for name, value in (("IPS", estimate.ips), ("SNIPS", estimate.snips), ("DR", estimate.dr)):
        low, high = value.interval
        rows.append([name, number(value.value), f"[{number(low)}, {number(high)}]"])
    low, high = estimate.logged.interval
    rows.append(["logged policy", number(estimate.logged.value), f"[{number(low)}, {number(high)}]"])
    lines = table(["estimator", "value", "95% interval"], rows)
    lines.append("")
    lines.append(
        f"  ESS {estimate.ess:,.1f} of {estimate.n:,} rows ({estimate.ess / max(estimate.n, 1):.0%}); "
        f"{estimate.clipped:,} weights clipped; {estimate.dropped:,} rows dropped"
    )
    if estimate.warnings:
        lines.append("")
        lines.append("warnings:")
        lines += [f"  - {warning}" for warning in estimate.warnings]
    return "\n".join(lines)


def evaluate_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vary evaluate --model VERSION [--data FILE] [--out FILE] [--bootstrap N] [--clip M]``."""
    from personalization.models.evaluation import (
        EvaluationError,
        evaluate_logged,
        read_logged_file,
        stand_in_experience,
    )
    from personalization.errors import InvalidInput
    from personalization.models.files import ModelLoadError
    from personalization.models.logged import logged_bandit_from_streams
    from personalization.models.ope import LoggedDataError, write_action_probabilities
    from personalization.models.versions import check_version

    try:
        check_version(args.model, "--model")
    except InvalidInput as exc:
        err(str(exc))
        return 2
    if args.bootstrap < 1:
        err("--bootstrap must be ≥ 1")
        return 2
    if args.clip is not None and not args.clip > 0:
        err("--clip must be > 0")
        return 2
    try:
        loaded = _load_candidate(settings, args.model)
    except ModelLoadError as exc:
        err(str(exc))
        return 1
    if isinstance(loaded, int):
        return loaded
    policy, card = loaded
    plugin_types = frozenset(plugin_registry(args).policy_types())
    experience = load_experience(settings, card.experience, plugin_types) if card.experience else None
    if args.data:
        path = Path(args.data)
        if experience is None:
            print(
                "note: the experience is not in the content; the candidate's probabilities use the default "
                "bandit settings (thompson, min probability 0.05)"
            )
            experience = stand_in_experience(card)
        try:
            logged = read_logged_file(path, card.n_actions)
        except (LoggedDataError, OSError) as exc:
            err(str(exc))
            return 2
        source = str(path)
    else:
        if experience is None:
            err(f"evaluating on the logs needs experience {card.experience!r} in the content (its goals are the reward)")
            return 2
        if not settings.redis_url:
            err(f"{NO_REDIS}: evaluating on the logs reads the exposure and event streams in Redis; or pass --data FILE")
            return 2
        window_s = args.window_days * 86_400.0
        current = experience
        logged = with_redis(
            settings,
            lambda redis: logged_bandit_from_streams(redis, current, window_s, partitions=settings.stream_partitions),
        )
        source = f"the logs of experience {experience.key!r}"
        if len(logged) == 0:
            err(f"no logged exposures of experience {experience.key!r} with a visitor id: nothing to evaluate on")
            return 1
    try:
        estimate, target = evaluate_logged(policy, logged, experience, n_bootstrap=args.bootstrap, clip=args.clip)
    except EvaluationError as exc:
        err(str(exc))
        return 1
    print(f"policy {policy.version} on {len(logged):,} logged decisions from {source}")
    print(f"(bootstrap {args.bootstrap} resamples" + (f", weights clipped at {args.clip:g})" if args.clip else ")"))
    print(format_estimate(estimate))
    if args.out:
        write_action_probabilities(Path(args.out), target)
        print(f"\nwrote the candidate's action probabilities for {len(logged):,} rows to {args.out}")
    return 0
