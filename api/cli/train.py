"""``vary train [segments|policy]``: train a segment model or a bandit's reward model, then store it.

* ``vary train [segments]``: the segment model, from ``--data FILE`` (CSV/Parquet: ``ts``, feature
  columns, ``segment:<name>`` 0/1 columns), from the logs (``--from-events --goal G --days N``), or
  the bundled demo data.
* ``vary train policy --experience KEY``: a bandit's reward model from the exposure and event logs,
  or from ``--data FILE`` (logged-bandit feedback: context columns, action, propensity, reward).

The result is saved and registered by :func:`api.cli.models.store` (never replacing a registered
version: exit 1). Reading the logs
(``--from-events``, ``policy`` without ``--data``) needs ``VARY_REDIS_URL``: the streams live there.
scikit-learn is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

from api.cli.common import NO_REDIS, err, load_experience, plugin_registry, with_redis
from api.cli.models import CARD_ENCODER, models_dir, policies_dir, store
from api.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from personalization.decision.features import FeatureRow
    from personalization.models.ope import LoggedBandit
    from personalization.types import Experience

__all__ = ["add_train_parser", "train_command", "read_segment_table"]

SegmentTable = tuple[list["FeatureRow"], dict[str, list[int]], list[float] | None]


def add_train_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``train`` to the ``vary`` subcommands."""
    train = sub.add_parser(
        "train",
        help="train the segment model (default: the bundled demo data) or a bandit policy",
        description=(
            "vary train [segments]: the segment model, from --data FILE (CSV/Parquet: ts, feature columns, "
            "segment:<name> 0/1 columns), from the logs (--from-events --goal G --days N), or the bundled "
            "demo data. vary train policy --experience KEY: a bandit's reward model from the exposure and "
            "event logs, or from --data FILE (logged-bandit feedback: context columns, action, propensity, "
            "reward). Saved under <data_dir>; registered in Redis too when VARY_REDIS_URL is set."
        ),
    )
    train.add_argument("target", nargs="?", default="segments", choices=["segments", "policy"])
    train.add_argument("--data", help="training file (.csv or .parquet)")
    train.add_argument("--from-events", action="store_true", help="segments: label visitors from logged conversions")
    train.add_argument("--goal", help="with --from-events: the goal a visitor converts on (label converted_<goal>)")
    train.add_argument("--days", type=float, default=7.0, help="with --from-events: conversion window (default 7)")
    train.add_argument("--experience", help="policy: the bandit experience key (names the registry slot)")
    train.add_argument("--window-days", type=float, default=7.0,
                       help="policy from the logs: a goal within this many days of the exposure is a reward (default 7)")
    train.add_argument("--random-state", type=int, default=0)
    train.add_argument("--activate", action=argparse.BooleanOptionalAction, default=True,
                       help="make the new model active (locally, and in the registry when VARY_REDIS_URL is set)")


# ---------------------------------------------------------------------------------------------------
# Reading training files


def _read_segment_parquet(path: Path) -> SegmentTable:
    """The Parquet form of the training CSV: same columns; strings stay strings, numbers → float."""
    from personalization.demo.data import LABEL_PREFIX, TS_COLUMN

    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ValueError(f"{path}: reading Parquet needs pyarrow, which is not installed; export CSV") from exc
    table = pq.read_table(path)
    names = list(table.column_names)
    columns = {name: table.column(name).to_pylist() for name in names}
    n = table.num_rows
    segments = [c.removeprefix(LABEL_PREFIX) for c in names if c.startswith(LABEL_PREFIX)]
    labels: dict[str, list[int]] = {}
    for name in segments:
        values = columns[LABEL_PREFIX + name]
        if any(v not in (0, 1, True, False) for v in values):
            raise ValueError(f"{path}: column {LABEL_PREFIX + name!r}: labels must be 0 or 1")
        labels[name] = [int(v) for v in values]
    timestamps = [float(v) for v in columns[TS_COLUMN]] if TS_COLUMN in columns else None
    features = [c for c in names if c != TS_COLUMN and not c.startswith(LABEL_PREFIX)]
    rows: list[FeatureRow] = [{} for _ in range(n)]
    for name in features:
        for row, value in zip(rows, columns[name]):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            row[name] = float(value) if isinstance(value, int | float | bool) else str(value)
    return rows, labels, timestamps


def read_segment_table(path: Path) -> SegmentTable:
    """Training rows, ``segment:<name>`` labels and ``ts`` timestamps from a ``.csv`` or ``.parquet``."""
    from personalization.demo.data import read_training_csv

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_training_csv(path)
    if suffix in (".parquet", ".pq"):
        return _read_segment_parquet(path)
    raise ValueError(f"{path}: unknown format {suffix or '(no suffix)'!r}; use .csv or .parquet")


def _file_timestamps(path: Path, column: str = "ts") -> list[float] | None:
    """The ``ts`` column of a logged-bandit file, or ``None`` when it has none (or one is empty)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or column not in [f.strip() for f in reader.fieldnames]:
                return None
            values = [(row.get(column) or "").strip() for row in reader if any((v or "").strip() for v in row.values())]
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            return None
        table = pq.read_table(path)
        if column not in table.column_names:
            return None
        values = ["" if v is None else str(v) for v in table.column(column).to_pylist()]
    try:
        return [float(v) for v in values] if all(values) else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------
# vary train segments


def _train_segments(settings: Settings, args: argparse.Namespace) -> int:
    from personalization.demo.data import DEMO_CSV, read_training_csv
    from personalization.models.files import dump_bytes
    from personalization.models.logged import segment_training_from_events
    from personalization.models.segment_model import train_segment_model

    if args.data and args.from_events:
        err("train segments: use either --data FILE or --from-events, not both")
        return 2
    if args.from_events:
        if not args.goal:
            err("train segments --from-events needs --goal GOAL (e.g. --goal purchase)")
            return 2
        if not settings.redis_url:
            err(f"{NO_REDIS}: --from-events reads the exposure and event streams in Redis")
            return 2
        days = args.days

        async def read(redis: Redis) -> SegmentTable:
            return await segment_training_from_events(
                redis, args.goal, days, extractors=plugin_registry(args).extractors
            )

        rows, labels, timestamps = with_redis(settings, read)
        source = f"the logs: converted on {args.goal!r} within {days:g} days of the first exposure"
        if not rows:
            err(f"no visitor was first exposed more than {days:g} days ago: nothing to label yet")
            return 1
    else:
        path = Path(args.data) if args.data else DEMO_CSV
        try:
            rows, labels, timestamps = read_segment_table(path) if args.data else read_training_csv(path)
        except (OSError, ValueError) as exc:
            err(f"cannot read the training data: {exc}")
            return 2
        source = str(path) if args.data else "the bundled demo data"
    try:
        pipeline, card = train_segment_model(rows, labels, timestamps, random_state=args.random_state)
    except ValueError as exc:
        err(f"cannot train on {source}: {exc}")
        return 1
    print(f"trained {card.version}: segments {', '.join(card.segments)} on {len(rows):,} rows from {source}")
    for segment, metrics in card.metrics.items():
        print(f"  {segment}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return store(settings, models_dir(settings), card.version, dump_bytes(pipeline), CARD_ENCODER.encode(card), args.activate)


# ---------------------------------------------------------------------------------------------------
# vary train policy


def _policy_data(
    settings: Settings, args: argparse.Namespace, experience: Experience | None
) -> tuple[LoggedBandit, list[float] | None, str] | int:
    """The logged decisions to train on (from the file or the streams), or an exit code."""
    from personalization.models.evaluation import read_logged_file
    from personalization.models.logged import logged_decisions
    from personalization.models.ope import LoggedDataError, read_logged_bandit

    if args.data:
        path = Path(args.data)
        n_actions = len(experience.variants) + 1 if experience is not None else None
        try:
            if n_actions is None:
                logged = read_logged_bandit(path, ignore=("ts",))
            else:
                logged = read_logged_file(path, n_actions)
            timestamps = _file_timestamps(path)
        except (LoggedDataError, OSError) as exc:
            err(str(exc))
            return 2
        return logged, timestamps, str(path)
    if experience is None:
        return 2
    if not settings.redis_url:
        err(f"{NO_REDIS}: training from the logs reads the exposure and event streams in Redis")
        return 2
    window_s = args.window_days * 86_400.0
    decisions = with_redis(settings, lambda redis: logged_decisions(redis, experience, window_s))
    source = f"the logs (first exposure per visitor, reward = a goal within {args.window_days:g} days)"
    return decisions.bandit, decisions.timestamps, source


def _train_policy(settings: Settings, args: argparse.Namespace) -> int:
    from personalization.models.files import dump_bytes
    from personalization.models.policy import train_reward_model

    if not args.experience:
        err("train policy needs --experience KEY (with --data it names the experience the policy serves)")
        return 2
    if args.from_events:
        err("train policy reads the logs by default; --from-events is for train segments")
        return 2
    experience = load_experience(settings, args.experience, frozenset(plugin_registry(args).policy_types()))
    if experience is None and not args.data:
        return 2
    if experience is not None and experience.type != "bandit":
        print(f"note: experience {experience.key!r} is of type {experience.type}; only bandit experiences serve a policy")
    data = _policy_data(settings, args, experience)
    if isinstance(data, int):
        return data
    logged, timestamps, source = data
    if experience is None:
        print(f"note: {logged.n_actions} variants, read from the file (the experience is not in the content)")
    if len(logged) == 0:
        err(f"no logged decisions for experience {args.experience!r} in {source}")
        return 1
    try:
        pipeline, card = train_reward_model(
            logged.contexts,
            logged.actions,
            logged.rewards,
            logged.n_actions,
            args.random_state,
            experience=args.experience,
            timestamps=timestamps,
            propensities=logged.propensities,
        )
    except ValueError as exc:
        err(f"cannot train on {source}: {exc}")
        return 1
    print(f"trained {card.version}: policy for {args.experience!r} on {len(logged):,} decisions from {source}")
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in card.metrics.items()))
    directory = policies_dir(settings, args.experience)
    return store(settings, directory, card.version, dump_bytes(pipeline), CARD_ENCODER.encode(card), args.activate)


def train_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vary train [segments|policy] …`` (no target: the segment model, as before)."""
    if args.target == "policy":
        return _train_policy(settings, args)
    if args.experience:
        err("--experience is for train policy")
        return 2
    return _train_segments(settings, args)
