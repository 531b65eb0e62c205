""""Preview as": the real decision for a visitor a marketer describes, with no trace left behind.

The marketer gives a visitor id, country, channel, device, traits and — optionally — segment
scores. The decision is :func:`personalization.decision.decide.decide` itself, the function
``POST /v1/personalize`` runs, so the preview cannot drift from serving; two things differ on
purpose: the given segment scores replace the model's for those segments (:class:`ScoreOverride`),
and the visitor's stored profile is not read (a new visitor: no sticky assignment decides for
them) while no exposure and no sticky assignment is written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import msgspec

from content import ContentSnapshot
from personalization.decision.decide import EntryRequest, Outcome, decide
from personalization.decision.features import FeatureRow
from personalization.seams import PluginSeams, RewardModel, SegmentModel
from personalization.types import Experience, Profile, Visitor

__all__ = ["PreviewError", "ScoreOverride", "parse_scores", "parse_traits", "preview_decision", "preview_visitor"]


class PreviewError(ValueError):
    """A preview field is unusable; the message names the field."""


class ScoreOverride:
    """A :class:`SegmentModel` that answers the given scores and asks ``model`` for the rest."""

    def __init__(self, model: SegmentModel | None, overrides: Mapping[str, float]) -> None:
        self._model = model
        self._overrides = dict(overrides)

    @property
    def version(self) -> str:
        return f"{self._model.version if self._model else 'none'}+preview"

    @property
    def segments(self) -> tuple[str, ...]:
        known = self._model.segments if self._model else ()
        return tuple(dict.fromkeys([*known, *self._overrides]))

    def score(self, features: FeatureRow) -> dict[str, float]:
        scores = self._model.score(features) if self._model else {}
        return {**scores, **self._overrides}


def parse_scores(fields: Mapping[str, str]) -> dict[str, float]:
    """``{segment: "0.8"}`` form values → scores in [0, 1]; blank values are left to the model."""
    scores: dict[str, float] = {}
    for name, raw in fields.items():
        text = raw.strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise PreviewError(f"segment {name}: expected a number from 0 to 1, got {raw!r}") from None
        if not 0.0 <= value <= 1.0:
            raise PreviewError(f"segment {name}: expected a number from 0 to 1, got {raw!r}")
        scores[name] = value
    return scores


def parse_traits(text: str) -> dict[str, str | float | bool]:
    """``key=value`` lines → traits; numbers and true/false become numbers and flags."""
    traits: dict[str, str | float | bool] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise PreviewError(f"traits line {number}: expected key=value, got {line.strip()!r}")
        lowered = value.lower()
        if lowered in {"true", "false"}:
            traits[key] = lowered == "true"
            continue
        try:
            traits[key] = float(value)
        except ValueError:
            traits[key] = value
    return traits


def preview_visitor(fields: Mapping[str, object]) -> Visitor:
    """A :class:`Visitor` from the form, validated as the API validates one (msgspec)."""
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v not in (None, "")}, Visitor)
    except msgspec.ValidationError as exc:
        raise PreviewError(f"visitor: {exc}") from None


def preview_decision(
    snapshot: ContentSnapshot,
    experience: Experience,
    visitor: Visitor,
    model: SegmentModel | None,
    overrides: Mapping[str, float],
    policies: Mapping[str, RewardModel] | None = None,
    now: float | None = None,
    plugins: PluginSeams | None = None,
) -> tuple[list[str], Outcome]:
    """The decision for every baseline entry the experience hangs on (each with its full experience
    list, so a higher-priority experience can win, as in serving). Nothing is recorded. ``plugins``:
    the app's plugin registry, so plugin features and experience types decide as they do in serving."""
    entries = sorted(
        entry_id
        for entry_id in snapshot.entries
        if any(e.key == experience.key for e in snapshot.experiences_for(entry_id))
    )
    scorer: SegmentModel | None = ScoreOverride(model, overrides) if (model or overrides) else None
    outcome = decide(
        visitor,
        Profile(),
        [EntryRequest(entry_id, snapshot.experiences_for(entry_id)) for entry_id in entries],
        scorer,
        time.time() if now is None else now,
        new_id=lambda: "preview",
        policies=policies,
        plugins=plugins,
    )
    return entries, outcome
