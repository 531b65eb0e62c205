"""Serving segment scores: the active model, swapped atomically, read without locks.

Requests read :attr:`ActiveModel.current` once per decision; activating a model replaces the
reference in one assignment, so a request sees either the old model or the new one, never a mix.
The compiled fast path is :mod:`personalization.decision.segments`; training, persistence and
loading live in :mod:`personalization.models.segment_model`.
"""

from __future__ import annotations

import logging

from personalization.seams import RewardModel, SegmentModel

__all__ = ["ActiveModel", "ActivePolicies"]

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
    """The reward model serving each ``bandit`` experience, by experience key — and the candidate
    running in shadow beside it (``shadows``: what it would have chosen is logged, never served).

    ``current`` and ``shadows`` are replaced whole on every change (copy, then assign), so a request
    holding the old mapping keeps a consistent view.
    """

    def __init__(self) -> None:
        self.current: dict[str, RewardModel] = {}
        self.shadows: dict[str, RewardModel] = {}

    def activate(self, experience: str, model: RewardModel) -> None:
        self.current = {**self.current, experience: model}
        log.info("policy %s active for experience %s", model.version, experience)

    def shadow(self, experience: str, model: RewardModel | None) -> None:
        """Run ``model`` in shadow for ``experience`` (``None``: stop the shadow)."""
        shadows = {key: value for key, value in self.shadows.items() if key != experience}
        if model is not None:
            shadows[experience] = model
        self.shadows = shadows
        log.info("policy %s in shadow for experience %s", model.version if model else None, experience)
