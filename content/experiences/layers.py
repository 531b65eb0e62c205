"""Mutually exclusive layers: an experience's ``layer`` and ``layerRange`` fields, and the shares.

Experiences that share a ``layer`` split its traffic so a visitor is in at most one of them, even
when they sit on different entries of a page (GrowthBook's namespaces; the decision side is
``personalization.decision.selection.layer_miss``). Each owns ``layer_range`` = [start, end) of the
layer, 0 ≤ start < end ≤ 1, and keeps its own weights inside that share.

Rules, per layer:

- No experience gives a range: equal consecutive shares in experience-key order (``a`` gets
  [0, ½), ``b`` [½, 1)). Every experience that compiled counts — scheduled, ended and unlinked ones
  too — so linking an entry or an end date does not move anyone else's visitors; adding or removing
  one of the layer's experiences does, which is why a long-running layer should give ranges.
- Every experience gives a range: those ranges, which must not overlap. An experience whose range
  overlaps one that starts earlier (ties: the smaller key) is reported and switched off.
- Some give a range and some do not: the ones without cannot be given a share that leaves the
  others' alone, so they are reported and switched off.

A range outside [0, 1), a range without a layer, or a layer that is not a short name is reported by
:func:`parse_layer` and switches the experience off: running it unlayered could put its visitors in
the experiences it was meant to exclude.
"""

from __future__ import annotations

import msgspec

from content.experiences.base import CompiledExperiences, ContentModel
from content.snapshot import ContentIssue
from personalization.types import Experience

__all__ = ["MAX_LAYER_LENGTH", "apply_layers", "parse_layer"]

#: A layer is a short name, like a key.
MAX_LAYER_LENGTH = 64
_RANGE_FIX = (
    "Enter the layer range as a JSON list [start, end] with 0 ≤ start < end ≤ 1, e.g. [0, 0.5], or clear it."
)


def parse_layer(
    layer: object, layer_range: object
) -> tuple[str | None, tuple[float, float] | None, list[tuple[str, str]]]:
    """The ``layer`` and ``layerRange`` field values read: layer name, range, and (problem, fix) pairs.

    A problem's text follows "Experience <label> " (the caller adds the label and "switched off").
    """
    problems: list[tuple[str, str]] = []
    name: str | None = None
    if isinstance(layer, str) and layer.strip():
        name = layer.strip()
        if len(name) > MAX_LAYER_LENGTH:
            problems.append((f"has a layer (field layer) longer than {MAX_LAYER_LENGTH} characters.",
                             "Give the layer a short name, e.g. homepage."))
            name = None
    elif layer is not None and layer != "":
        problems.append((f"has a layer (field layer) that is not a name: {layer!r}.",
                         "Enter the layer's name, e.g. homepage, or clear it."))
    if layer_range is None or layer_range == []:
        return name, None, problems
    bounds = _bounds(layer_range)
    if bounds is None:
        problems.append((f"has a layer range (field layerRange) Vary cannot use: {layer_range!r}; it is "
                         "[start, end) within [0, 1), with start before end.", _RANGE_FIX))
        return name, None, problems
    if name is None and not problems:
        problems.append(("has a layer range (field layerRange) but no layer, so it excludes nothing.",
                         "Enter the layer (field layer) the range belongs to, or clear the range."))
    return name, bounds, problems


def _bounds(value: object) -> tuple[float, float] | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    start, end = float(value[0]), float(value[1])
    if not 0.0 <= start < end <= 1.0:  # NaN fails every comparison
        return None
    return start, end


def apply_layers(compiled: CompiledExperiences, model: ContentModel) -> CompiledExperiences:
    """Give every layered experience its range (see the module doc); switch off the ones that clash."""
    layers: dict[str, list[Experience]] = {}
    for experience in compiled.experiences.values():
        if experience.layer is not None:
            layers.setdefault(experience.layer, []).append(experience)
    if not layers:
        return compiled
    ranges: dict[str, tuple[float, float]] = {}
    issues: list[ContentIssue] = []
    for layer, members in sorted(layers.items()):
        members.sort(key=lambda e: e.key)
        given = [e for e in members if e.layer_range is not None]
        if not given:
            n = len(members)
            for i, experience in enumerate(members):
                ranges[experience.key] = (i / n, 1.0 if i == n - 1 else (i + 1) / n)
            continue
        for experience in members:
            if experience.layer_range is None:
                issues.append(_issue(
                    experience, model,
                    f'has no layer range (field layerRange), but other experiences in layer "{layer}" give '
                    "one, so it has no share of the layer.",
                    f'Give it a range no other experience in layer "{layer}" uses, e.g. [0.5, 1], or clear '
                    "the ranges of all of them for equal shares."))
        kept: Experience | None = None
        for experience in sorted(given, key=lambda e: (e.layer_range, e.key)):
            share = experience.layer_range
            assert share is not None
            if kept is not None and kept.layer_range is not None and share[0] < kept.layer_range[1]:
                start, end = kept.layer_range
                issues.append(_issue(
                    experience, model,
                    f'has layer range (field layerRange) [{share[0]:g}, {share[1]:g}), which overlaps '
                    f'[{start:g}, {end:g}) of experience "{kept.name}" ({kept.key}) in layer "{layer}": '
                    "a visitor could be in both.",
                    f"Give it a range that starts at {end:g} or later, or shorten the other one."))
                continue
            ranges[experience.key] = share
            kept = experience
    laid = {
        key: _laid(e, ranges) for key, e in compiled.experiences.items() if e.layer is None or key in ranges
    }
    by_entry: dict[str, tuple[Experience, ...]] = {}
    for entry_id, experiences in compiled.by_entry.items():
        chosen = tuple(_laid(e, ranges) for e in experiences if e.layer is None or e.key in ranges)
        if chosen:
            by_entry[entry_id] = chosen
    return msgspec.structs.replace(
        compiled, experiences=laid, by_entry=by_entry, issues=(*compiled.issues, *issues)
    )


def _laid(experience: Experience, ranges: dict[str, tuple[float, float]]) -> Experience:
    if experience.layer is None:
        return experience
    return msgspec.structs.replace(experience, layer_range=ranges[experience.key])


def _issue(experience: Experience, model: ContentModel, problem: str, fix: str) -> ContentIssue:
    return ContentIssue(
        entry_id=experience.id,
        content_type=model.experience_type,
        problem=f'Experience "{experience.name}" {problem} It is switched off.',
        fix=fix,
    )
