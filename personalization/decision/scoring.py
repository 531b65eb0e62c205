"""Serving segment scores: the active model, swapped atomically, read without locks.

Requests read :attr:`ActiveModel.current` once per decision; activating a model replaces the
reference in one assignment, so a request sees either the old model or the new one, never a mix.
Training, persistence and the compiled fast path live in :mod:`personalization.models.segment_model`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from personalization.models.policy import RewardModel
from personalization.models.segment_model import (
    CompiledSegmentModel,
    ModelLoadError,
    SegmentModel,
    compile_model,
    load_model,
)

__all__ = ["ActiveModel", "ActivePolicies", "SegmentModel", "load_active_model"]

log = logging.getLogger("vary.scoring")


class ActiveModel:
    """Holds the model that serves now (``None``: rule audiences only, no segment scores)."""

    def __init__(self, model: SegmentModel | None = None) -> None:
        self.current: SegmentModel | None = model

    def activate(self, model: SegmentModel | None) -> None:
        previous = self.current
        self.current = model
        log.info(
            "segment model %s active (was %s)",
            model.version if model else None,
            previous.version if previous else None,
        )

    @property
    def version(self) -> str | None:
        model = self.current
        return model.version if model is not None else None


class ActivePolicies:
    """The reward model serving each ``bandit`` experience, by experience key.

    ``current`` is replaced whole on every change (copy, then assign), so a request holding the old
    mapping keeps a consistent view.
    """

    def __init__(self) -> None:
        self.current: dict[str, RewardModel] = {}

    def activate(self, experience: str, model: RewardModel) -> None:
        self.current = {**self.current, experience: model}
        log.info("policy %s active for experience %s", model.version, experience)


def load_active_model(directory: Path) -> CompiledSegmentModel | None:
    """The model named in ``<directory>/active``, compiled; ``None`` (and a log line) if unusable."""
    if not (Path(directory) / "active").exists():
        return None
    try:
        pipeline, card = load_model(Path(directory))
    except ModelLoadError as exc:
        log.error("segment model not loaded: %s", exc)
        return None
    return compile_model(pipeline, card)
