"""``vary models show|list``: the trained models, on disk and in the model registry.

Where models go (``vary train`` stores them through :func:`store`):

* locally, always: segment models under ``<data_dir>/models``, policies under
  ``<data_dir>/policies/<experience>`` (``<version>.skops`` + ``<version>.json`` card, an ``active``
  pointer). ``vary serve`` seeds an empty registry from ``<data_dir>/models``.
* in the model registry (Redis) as well when ``VARY_REDIS_URL`` is set: registered and, unless
  ``--no-activate``, activated — every running worker switches within a moment. Without
  ``VARY_REDIS_URL`` the commands say so, and say how to register the model later. A version that
  is registered already is never replaced: the command says so and exits 1.

A version named on the command line is checked for shape
(:func:`~personalization.models.versions.check_version`) before anything is looked up: exit 2.

scikit-learn is imported only when a command runs, not while ``vary`` builds its parser.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from api.cli.common import NO_REDIS, err, number, table, utc, with_redis
from api.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from personalization.models.policy import PolicyCard
    from personalization.models.segment_model import ModelCard

__all__ = [
    "add_models_parser",
    "models_command",
    "models_dir",
    "policies_dir",
    "store",
    "local_cards",
    "format_card",
]

CARD_ENCODER = msgspec.json.Encoder()


def add_models_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``models`` (``show``, ``list``) to the ``vary`` subcommands."""
    models = sub.add_parser("models", help="show or list trained models (local and, with VARY_REDIS_URL, the registry)")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    show = models_sub.add_parser("show", help="print a model's card: data, validation metrics, calibration")
    show.add_argument("version")
    models_sub.add_parser("list", help="list local and registered models")


# ---------------------------------------------------------------------------------------------------
# Where models are kept


def models_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "models"


def policies_dir(settings: Settings, experience: str | None = None) -> Path:
    base = Path(settings.data_dir) / "policies"
    return base if experience is None else base / experience


async def _register(redis: Redis, data: bytes, card_json: bytes, activate: bool) -> str:
    from personalization.models.registry import ModelRegistry

    registry = ModelRegistry(redis)
    model = await registry.register(data, card_json)
    if activate:
        await registry.activate(model.version)
    return model.slot


def store(settings: Settings, directory: Path, version: str, data: bytes, card_json: bytes, activate: bool) -> int:
    """Save locally, then register (and activate) in Redis when configured; say what happened.
    Returns the exit code: 1 when the registry holds that version already (it is not replaced)."""
    from personalization.errors import ModelVersionExists
    from personalization.models.files import write_model_files

    write_model_files(directory, version, data, card_json, activate=activate)
    print(f"saved to {directory}" + (" (active there)" if activate else " (not activated)"))
    if not settings.redis_url:
        print(
            f"{NO_REDIS}: the model registry was not changed. Register it with POST /v1/models "
            "(files above), or set VARY_REDIS_URL and run this again."
        )
        return 0
    try:
        slot = with_redis(settings, lambda redis: _register(redis, data, card_json, activate))
    except ModelVersionExists as exc:
        err(f"the model registry was not changed: {exc}")
        return 1
    state = "registered and activated" if activate else "registered (not activated)"
    print(f"{state} in the model registry ({slot}) at {settings.redis_url}")
    return 0


def _decode_card(raw: bytes) -> ModelCard | PolicyCard:
    from personalization.models.policy import PolicyCard
    from personalization.models.segment_model import ModelCard

    try:
        return msgspec.json.decode(raw, type=ModelCard)
    except msgspec.ValidationError:
        return msgspec.json.decode(raw, type=PolicyCard)


def local_cards(settings: Settings) -> list[tuple[Path, ModelCard | PolicyCard, bool]]:
    """Every card under the local model directories: (directory, card, active there)."""
    directories = [models_dir(settings)]
    policies = policies_dir(settings)
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
# Describing


def format_card(card: ModelCard | PolicyCard) -> str:
    """A model card as readable text: identity, data, validation metrics (and calibration)."""
    from personalization.models.policy import PolicyCard

    policy = isinstance(card, PolicyCard)
    lines = [f"{card.version}  ({'bandit policy' if policy else 'segment model'})"]
    facts: list[tuple[str, str]] = [("created", utc(card.created_at)), ("scikit-learn", card.sklearn_version)]
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
        lines += table(["metric", "value"], [[k, number(v)] for k, v in card.metrics.items()])
        return "\n".join(lines)
    names = ["roc_auc", "log_loss", "brier"]
    rows = [[segment, *(number(m.get(name, math.nan)) for name in names)] for segment, m in card.metrics.items()]
    lines += table(["segment", *names], rows)
    for segment, calibration in card.calibration.items():
        lines.append("")
        lines.append(f"calibration: {segment}")
        lines += table(
            ["predicted", "observed", "count"],
            [[f"{p:.3f}", f"{o:.3f}", f"{c:,}"] for p, o, c in calibration],
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# vary models


def _show(settings: Settings, version: str) -> int:
    from personalization.errors import InvalidInput
    from personalization.models.versions import check_version

    try:
        check_version(version)
    except InvalidInput as exc:
        err(str(exc))
        return 2
    for directory, card, active in local_cards(settings):
        if card.version == version:
            print(format_card(card))
            print(f"\nstored in {directory}" + (" (active there)" if active else ""))
            return 0
    if not settings.redis_url:
        err(f"no model {version!r} under {settings.data_dir}; {NO_REDIS}, so the registry was not searched")
        return 1
    from personalization.models.registry import ModelRegistry, UnknownModelVersion

    async def get(redis: Redis) -> tuple[Any, dict[str, str]] | None:
        registry = ModelRegistry(redis)
        try:
            model = await registry.get(version)
        except UnknownModelVersion:
            return None
        return model, await registry.active_versions()

    found = with_redis(settings, get)
    if found is None:
        err(f"no model {version!r} under {settings.data_dir} or in the registry")
        return 1
    model, active = found
    print(format_card(model.card))
    print(f"\nin the model registry ({model.slot})" + (" (active)" if active.get(model.slot) == version else ""))
    return 0


def _list(settings: Settings) -> int:
    from personalization.models.policy import PolicyCard
    from personalization.models.registry import ModelRegistry

    rows = []
    for directory, card, active in local_cards(settings):
        kind = f"policy:{card.experience}" if isinstance(card, PolicyCard) else "segments"
        rows.append([card.version, kind, utc(card.created_at), "*" if active else "", str(directory)])
    if rows:
        print(f"local models under {settings.data_dir} (* = active there):")
        print("\n".join(table(["version", "slot", "created", "", "directory"], rows)))
    else:
        print(f"no local models under {settings.data_dir}")
    if not settings.redis_url:
        print(f"{NO_REDIS}: the model registry was not listed")
        return 0
    active, models = with_redis(settings, lambda redis: ModelRegistry(redis).list())
    print("")
    if not models:
        print("the model registry is empty")
        return 0
    print("model registry (* = active):")
    print(
        "\n".join(
            table(
                ["version", "slot", "created", ""],
                [[m.version, m.slot, utc(m.card.created_at), "*" if active.get(m.slot) == m.version else ""] for m in models],
            )
        )
    )
    return 0


def models_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vary models show VERSION`` / ``vary models list``."""
    if args.models_command == "show":
        return _show(settings, args.version)
    return _list(settings)
