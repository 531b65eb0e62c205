"""``vary train``, ``vary models`` and ``vary evaluate``: the model commands behind :mod:`api.cli.main`.

``api/cli/main.py`` parses arguments and dispatches here; each command takes the :class:`Settings` and the
parsed arguments and returns an exit code (0 ok, 1 the work failed, 2 a usage or setup problem).

Where models go:

* locally, always: segment models under ``<data_dir>/models``, policies under
  ``<data_dir>/policies/<experience>`` (``<version>.skops`` + ``<version>.json`` card, an ``active``
  pointer). ``vary serve`` seeds an empty registry from ``<data_dir>/models``.
* in the model registry (Redis) as well when ``VARY_REDIS_URL`` is set: registered and, unless
  ``--no-activate``, activated — every running worker switches within a moment. Without
  ``VARY_REDIS_URL`` the commands say so, and say how to register the model later.

Commands that read the logs (``--from-events``, ``train policy --experience`` without ``--data``,
``evaluate`` without ``--data``) need ``VARY_REDIS_URL``: the streams live in that Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import msgspec
from redis.asyncio import Redis

from api.redis_client import async_redis
from api.settings import Settings
from personalization.decision.features import FeatureRow
from personalization.models.files import ModelLoadError, dump_bytes, write_model_files
from personalization.models.ope import LoggedBandit, LoggedDataError, OffPolicyEstimate, write_action_probabilities
from personalization.models.policy import PolicyCard
from personalization.models.segment_model import ModelCard
from personalization.types import Experience

__all__ = [
    "NO_REDIS",
    "train_command",
    "models_command",
    "evaluate_command",
    "read_segment_table",
    "format_card",
    "format_estimate",
]

T = TypeVar("T")

NO_REDIS = "VARY_REDIS_URL is not set"
_CARD_ENCODER = msgspec.json.Encoder()


# ---------------------------------------------------------------------------------------------------
# Small helpers


def _err(message: str) -> None:
    print(f"vary: {message}", file=sys.stderr)


def _models_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "models"


def _policies_dir(settings: Settings, experience: str | None = None) -> Path:
    base = Path(settings.data_dir) / "policies"
    return base if experience is None else base / experience


def _with_redis(settings: Settings, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``work(redis)`` on a fresh client of ``VARY_REDIS_URL`` (the caller checked it is set)."""

    async def run() -> T:
        assert settings.redis_url
        redis = async_redis(settings)  # one server or a cluster
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    return asyncio.run(run())


def _load_experience(settings: Settings, key: str) -> Experience | None:
    """The experience ``key`` from the configured content (``None``, said on stderr, when absent)."""
    from api.runtime import content_source_for
    from content import compile_snapshot

    try:
        snapshot = compile_snapshot(content_source_for(settings).load())
    except Exception as exc:  # any content failure: the caller decides whether it can go on
        _err(f"could not load the content to look up experience {key!r}: {exc}")
        return None
    experience = snapshot.experiences.get(key)
    if experience is None:
        known = ", ".join(sorted(snapshot.experiences)) or "none"
        _err(f"experience {key!r} is not in the content (experiences: {known})")
    return experience


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = []
    for row in (header, *rows):
        lines.append(indent + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return lines


# ---------------------------------------------------------------------------------------------------
# Reading segment training tables


def _read_segment_parquet(path: Path) -> tuple[list[FeatureRow], dict[str, list[int]], list[float] | None]:
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


def read_segment_table(path: Path) -> tuple[list[FeatureRow], dict[str, list[int]], list[float] | None]:
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
# Registering and describing


async def _register(redis: Redis, data: bytes, card_json: bytes, activate: bool) -> str:
    from personalization.models.registry import ModelRegistry

    registry = ModelRegistry(redis)
    model = await registry.register(data, card_json)
    if activate:
        await registry.activate(model.version)
    return model.slot


def _store(settings: Settings, directory: Path, version: str, data: bytes, card_json: bytes, activate: bool) -> None:
    """Save locally, then register (and activate) in Redis when configured; say what happened."""
    write_model_files(directory, version, data, card_json, activate=activate)
    print(f"saved to {directory}" + (" (active there)" if activate else " (not activated)"))
    if not settings.redis_url:
        print(
            f"{NO_REDIS}: the model registry was not changed. Register it with POST /v1/models "
            "(files above), or set VARY_REDIS_URL and run this again."
        )
        return
    slot = _with_redis(settings, lambda redis: _register(redis, data, card_json, activate))
    state = "registered and activated" if activate else "registered (not activated)"
    print(f"{state} in the model registry ({slot}) at {settings.redis_url}")


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def format_card(card: ModelCard | PolicyCard) -> str:
    """A model card as readable text: identity, data, validation metrics (and calibration)."""
    policy = isinstance(card, PolicyCard)
    lines = [f"{card.version}  ({'bandit policy' if policy else 'segment model'})"]
    facts: list[tuple[str, str]] = [("created", _utc(card.created_at)), ("scikit-learn", card.sklearn_version)]
    if isinstance(card, PolicyCard):
        facts.append(("experience", card.experience or "-"))
        facts.append(("variants", str(card.n_actions)))
    else:
        facts.append(("segments", ", ".join(card.segments)))
    facts.append(("features", ", ".join(card.features) or "-"))
    window = card.training_window
    facts.append(("window", f"{window['start']} … {window['end']}" if window else "- (row order)"))
    facts.append(("rows", ", ".join(f"{k} {v:,}" for k, v in card.rows.items())))
    if isinstance(card, PolicyCard):
        facts.append(("training rows per variant", ", ".join(f"{a}: {c:,}" for a, c in enumerate(card.actions))))
    width = max(len(name) for name, _ in facts)
    lines += [f"  {name.ljust(width)}  {value}" for name, value in facts]
    lines.append("")
    lines.append("validation (newest rows by time, not trained on):")
    if isinstance(card, PolicyCard):
        lines += _table(["metric", "value"], [[k, _number(v)] for k, v in card.metrics.items()])
        return "\n".join(lines)
    names = ["roc_auc", "log_loss", "brier"]
    rows = [[segment, *(_number(m.get(name, math.nan)) for name in names)] for segment, m in card.metrics.items()]
    lines += _table(["segment", *names], rows)
    for segment, table in card.calibration.items():
        lines.append("")
        lines.append(f"calibration: {segment}")
        lines += _table(
            ["predicted", "observed", "count"],
            [[f"{p:.3f}", f"{o:.3f}", f"{c:,}"] for p, o, c in table],
        )
    return "\n".join(lines)


def _decode_card(raw: bytes) -> ModelCard | PolicyCard:
    try:
        return msgspec.json.decode(raw, type=ModelCard)
    except msgspec.ValidationError:
        return msgspec.json.decode(raw, type=PolicyCard)


def _local_cards(settings: Settings) -> list[tuple[Path, ModelCard | PolicyCard, bool]]:
    """Every card under the local model directories: (directory, card, active there)."""
    directories = [_models_dir(settings)]
    policies = _policies_dir(settings)
    if policies.is_dir():
        directories += sorted(p for p in policies.iterdir() if p.is_dir())
    found = []
    for directory in directories:
        if not directory.is_dir():
            continue
        active_file = directory / "active"
        active = active_file.read_text(encoding="utf-8").strip() if active_file.exists() else None
        for path in sorted(directory.glob("*.json")):
            try:
                card = _decode_card(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                continue
            found.append((directory, card, card.version == active))
    return found


# ---------------------------------------------------------------------------------------------------
# vary train


def _train_segments(settings: Settings, args: argparse.Namespace) -> int:
    from personalization.demo.data import DEMO_CSV, read_training_csv
    from personalization.models.logged import segment_training_from_events
    from personalization.models.segment_model import train_segment_model

    if args.data and args.from_events:
        _err("train segments: use either --data FILE or --from-events, not both")
        return 2
    if args.from_events:
        if not args.goal:
            _err("train segments --from-events needs --goal GOAL (e.g. --goal purchase)")
            return 2
        if not settings.redis_url:
            _err(f"{NO_REDIS}: --from-events reads the exposure and event streams in Redis")
            return 2
        days = args.days

        async def read(redis: Redis):  # noqa: ANN202 - the tuple of segment_training_from_events
            return await segment_training_from_events(redis, args.goal, days)

        rows, labels, timestamps = _with_redis(settings, read)
        source = f"the logs: converted on {args.goal!r} within {days:g} days of the first exposure"
        if not rows:
            _err(f"no visitor was first exposed more than {days:g} days ago: nothing to label yet")
            return 1
    else:
        path = Path(args.data) if args.data else DEMO_CSV
        try:
            rows, labels, timestamps = read_segment_table(path) if args.data else read_training_csv(path)
        except (OSError, ValueError) as exc:
            _err(f"cannot read the training data: {exc}")
            return 2
        source = str(path) if args.data else "the bundled demo data"
    try:
        pipeline, card = train_segment_model(rows, labels, timestamps, random_state=args.random_state)
    except ValueError as exc:
        _err(f"cannot train on {source}: {exc}")
        return 1
    print(f"trained {card.version}: segments {', '.join(card.segments)} on {len(rows):,} rows from {source}")
    for segment, metrics in card.metrics.items():
        print(f"  {segment}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    _store(settings, _models_dir(settings), card.version, dump_bytes(pipeline), _CARD_ENCODER.encode(card), args.activate)
    return 0


def _policy_data(
    settings: Settings, args: argparse.Namespace, experience: Experience | None
) -> tuple[LoggedBandit, list[float] | None, str] | int:
    """The logged decisions to train on (from the file or the streams), or an exit code."""
    from personalization.models.evaluation import read_logged_file
    from personalization.models.logged import logged_decisions

    if args.data:
        path = Path(args.data)
        n_actions = len(experience.variants) + 1 if experience is not None else None
        try:
            if n_actions is None:
                from personalization.models.ope import read_logged_bandit

                logged = read_logged_bandit(path, ignore=("ts",))
            else:
                logged = read_logged_file(path, n_actions)
            timestamps = _file_timestamps(path)
        except (LoggedDataError, OSError) as exc:
            _err(str(exc))
            return 2
        return logged, timestamps, str(path)
    if experience is None:
        return 2
    if not settings.redis_url:
        _err(f"{NO_REDIS}: training from the logs reads the exposure and event streams in Redis")
        return 2
    window_s = args.window_days * 86_400.0
    decisions = _with_redis(settings, lambda redis: logged_decisions(redis, experience, window_s))
    source = f"the logs (first exposure per visitor, reward = a goal within {args.window_days:g} days)"
    return decisions.bandit, decisions.timestamps, source


def _train_policy(settings: Settings, args: argparse.Namespace) -> int:
    from personalization.models.policy import train_reward_model

    if not args.experience:
        _err("train policy needs --experience KEY (with --data it names the experience the policy serves)")
        return 2
    if args.from_events:
        _err("train policy reads the logs by default; --from-events is for train segments")
        return 2
    experience = _load_experience(settings, args.experience)
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
        _err(f"no logged decisions for experience {args.experience!r} in {source}")
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
        )
    except ValueError as exc:
        _err(f"cannot train on {source}: {exc}")
        return 1
    print(f"trained {card.version}: policy for {args.experience!r} on {len(logged):,} decisions from {source}")
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in card.metrics.items()))
    directory = _policies_dir(settings, args.experience)
    _store(settings, directory, card.version, dump_bytes(pipeline), _CARD_ENCODER.encode(card), args.activate)
    return 0


def train_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vary train [segments|policy] …`` (no target: the segment model, as before)."""
    if args.target == "policy":
        return _train_policy(settings, args)
    if args.experience:
        _err("--experience is for train policy")
        return 2
    return _train_segments(settings, args)


# ---------------------------------------------------------------------------------------------------
# vary models


def _show(settings: Settings, version: str) -> int:
    for directory, card, active in _local_cards(settings):
        if card.version == version:
            print(format_card(card))
            print(f"\nstored in {directory}" + (" (active there)" if active else ""))
            return 0
    if not settings.redis_url:
        _err(f"no model {version!r} under {settings.data_dir}; {NO_REDIS}, so the registry was not searched")
        return 1
    from personalization.models.registry import ModelRegistry, UnknownModelVersion

    async def get(redis: Redis):  # noqa: ANN202
        registry = ModelRegistry(redis)
        try:
            model = await registry.get(version)
        except UnknownModelVersion:
            return None
        return model, await registry.active_versions()

    found = _with_redis(settings, get)
    if found is None:
        _err(f"no model {version!r} under {settings.data_dir} or in the registry")
        return 1
    model, active = found
    print(format_card(model.card))
    print(f"\nin the model registry ({model.slot})" + (" (active)" if active.get(model.slot) == version else ""))
    return 0


def _list(settings: Settings) -> int:
    rows = []
    for directory, card, active in _local_cards(settings):
        kind = f"policy:{card.experience}" if isinstance(card, PolicyCard) else "segments"
        rows.append([card.version, kind, _utc(card.created_at), "*" if active else "", str(directory)])
    if rows:
        print(f"local models under {settings.data_dir} (* = active there):")
        print("\n".join(_table(["version", "slot", "created", "", "directory"], rows)))
    else:
        print(f"no local models under {settings.data_dir}")
    if not settings.redis_url:
        print(f"{NO_REDIS}: the model registry was not listed")
        return 0
    from personalization.models.registry import ModelRegistry

    active, models = _with_redis(settings, lambda redis: ModelRegistry(redis).list())
    print("")
    if not models:
        print("the model registry is empty")
        return 0
    print("model registry (* = active):")
    print(
        "\n".join(
            _table(
                ["version", "slot", "created", ""],
                [[m.version, m.slot, _utc(m.card.created_at), "*" if active.get(m.slot) == m.version else ""] for m in models],
            )
        )
    )
    return 0


def models_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vary models show VERSION`` / ``vary models list``."""
    if args.models_command == "show":
        return _show(settings, args.version)
    return _list(settings)


# ---------------------------------------------------------------------------------------------------
# vary evaluate


def _load_candidate(settings: Settings, version: str):  # noqa: ANN202 - (compiled policy, card) | exit code
    """The policy ``version``: from the local policy directories first, else the registry."""
    from personalization.models.registry import ModelRegistry, UnknownModelVersion
    from personalization.models.policy import CompiledRewardModel, compile_policy, load_policy

    for directory, card, _ in _local_cards(settings):
        if card.version != version:
            continue
        if not isinstance(card, PolicyCard):
            _err(f"{version} is a segment model; only bandit policies can be evaluated off-policy")
            return 2
        pipeline, card = load_policy(directory, version)
        return compile_policy(pipeline, card), card
    if not settings.redis_url:
        _err(f"no policy {version!r} under {settings.data_dir}; {NO_REDIS}, so the registry was not searched")
        return 1

    async def load(redis: Redis):  # noqa: ANN202
        registry = ModelRegistry(redis)
        try:
            return await registry.load(version)
        except UnknownModelVersion:
            return None

    model = _with_redis(settings, load)
    if model is None:
        _err(f"no model {version!r} under {settings.data_dir} or in the registry")
        return 1
    if not isinstance(model, CompiledRewardModel):
        _err(f"{version} is a segment model; only bandit policies can be evaluated off-policy")
        return 2
    return model, model.card


def format_estimate(estimate: OffPolicyEstimate) -> str:
    """The estimate as a table: estimator, value, 95% interval; then ESS, clipping and warnings."""
    rows = []
    for name, value in (("IPS", estimate.ips), ("SNIPS", estimate.snips), ("DR", estimate.dr)):
        low, high = value.interval
        rows.append([name, _number(value.value), f"[{_number(low)}, {_number(high)}]"])
    low, high = estimate.logged.interval
    rows.append(["logged policy", _number(estimate.logged.value), f"[{_number(low)}, {_number(high)}]"])
    lines = _table(["estimator", "value", "95% interval"], rows)
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
    from personalization.models.logged import logged_bandit_from_streams

    if args.bootstrap < 1:
        _err("--bootstrap must be ≥ 1")
        return 2
    if args.clip is not None and not args.clip > 0:
        _err("--clip must be > 0")
        return 2
    try:
        loaded = _load_candidate(settings, args.model)
    except ModelLoadError as exc:
        _err(str(exc))
        return 1
    if isinstance(loaded, int):
        return loaded
    policy, card = loaded
    experience = _load_experience(settings, card.experience) if card.experience else None
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
            _err(str(exc))
            return 2
        source = str(path)
    else:
        if experience is None:
            _err(f"evaluating on the logs needs experience {card.experience!r} in the content (its goals are the reward)")
            return 2
        if not settings.redis_url:
            _err(f"{NO_REDIS}: evaluating on the logs reads the exposure and event streams in Redis; or pass --data FILE")
            return 2
        window_s = args.window_days * 86_400.0
        current = experience
        logged = _with_redis(
            settings,
            lambda redis: logged_bandit_from_streams(redis, current, window_s, partitions=settings.stream_partitions),
        )
        source = f"the logs of experience {experience.key!r}"
        if len(logged) == 0:
            _err(f"no logged exposures of experience {experience.key!r} with a visitor id: nothing to evaluate on")
            return 1
    try:
        estimate, target = evaluate_logged(policy, logged, experience, n_bootstrap=args.bootstrap, clip=args.clip)
    except EvaluationError as exc:
        _err(str(exc))
        return 1
    print(f"policy {policy.version} on {len(logged):,} logged decisions from {source}")
    print(f"(bootstrap {args.bootstrap} resamples" + (f", weights clipped at {args.clip:g})" if args.clip else ")"))
    print(format_estimate(estimate))
    if args.out:
        write_action_probabilities(Path(args.out), target)
        print(f"\nwrote the candidate's action probabilities for {len(logged):,} rows to {args.out}")
    return 0
