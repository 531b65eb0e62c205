"""Contentful Personalization's custom flags (``InlineVariable`` components), read and checked.

An ``nt_experience`` whose variants tab is set to the *Custom flag* change type keeps no variant
entries: its ``nt_config.components`` holds ``{"type": "InlineVariable", "key", "valueType",
"baseline": {"value"}, "variants": [{"value"}]}`` (the shape ``@ninetailed/experience.js-utils``'s
``InlineVariableComponentSchema`` parses; ``valueType`` is ``String``, ``Object`` (JSON), ``Boolean`` or
``Number``). The front end reads a flag by key (``useFlag(key, default)`` in the React SDK), which
takes the first ``Variable`` change with that key from the Experience API's ``changes``:
``{"key", "type": "Variable", "value", "meta": {"experienceId", "variantIndex"}}``. The value for arm
``i`` is the baseline's for arm 0 and ``variants[i - 1]``'s otherwise, the baseline's again when that
variant is missing (``NinetailedPreviewPlugin.applyInlineVariableOverridesForExperience``).

A visitor who is not in the experience (audience, traffic) gets no change, so the front end keeps
its own default, as with Ninetailed. Vary decides flag experiences with the same hash as entry
replacements (:mod:`personalization.decision.ninetailed_bucketing`): the arm, hence the value, is the
one the SDK's own evaluation gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from msgspec import Struct

from content.snapshot import ContentEntry, ContentIssue

__all__ = ["CustomFlag", "FlagExperience", "collision_issues", "parse_inline_variable"]

_VALUE_TYPES = {
    "String": "text",
    "Object": "a JSON object",
    "Boolean": "true or false",
    "Number": "a number",
}


class CustomFlag(Struct, frozen=True, kw_only=True):
    """One ``InlineVariable`` component: a flag key and its value per arm."""

    key: str
    value_type: str
    baseline: Any
    variants: tuple[Any, ...] = ()

    def value(self, arm: int) -> Any:
        """The value served on ``arm`` (0: the baseline; a missing variant: the baseline's)."""
        if arm <= 0 or arm > len(self.variants):
            return self.baseline
        return self.variants[arm - 1]


class FlagExperience(Struct, frozen=True, kw_only=True):
    """The custom flags of one ``nt_experience``. ``entry_id`` is Ninetailed's experience id (the
    entry's ``sys.id``, ``meta.experienceId`` of a change) and the pseudo-entry Vary decides it under."""

    entry_id: str
    key: str
    flags: tuple[CustomFlag, ...]


def _fits(value: object, value_type: str) -> bool:
    if value_type == "String":
        return isinstance(value, str)
    if value_type == "Boolean":
        return isinstance(value, bool)
    if value_type == "Number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, dict)  # Object: JSON object (the app's JSON editor requires one)


def parse_inline_variable(component: dict[str, Any], position: int) -> tuple[CustomFlag | None, str | None]:
    """The flag of one ``InlineVariable`` component, or why it cannot be served (the whole component
    is then ignored: serving half a flag would mix values of two arms)."""
    where = f"component {position + 1} (custom flag)"
    key = component.get("key")
    if not isinstance(key, str) or not key.strip():
        return None, f"{where} has no flag key"
    where = f'custom flag "{key}"'
    value_type = component.get("valueType")
    if value_type not in _VALUE_TYPES:
        return None, (f"{where} has value type {value_type!r}; Contentful Personalization's are "
                      f"{', '.join(_VALUE_TYPES)}")
    baseline = component.get("baseline")
    if not isinstance(baseline, dict) or "value" not in baseline:
        return None, f'{where} has no baseline value ({{"value": …}})'
    raw_variants = component.get("variants")
    if isinstance(raw_variants, dict):  # seen in real spaces: one variant stored as an object
        raw_variants = [raw_variants]
    if not isinstance(raw_variants, list):
        return None, f"{where} has no list of variants"
    values = [baseline["value"]]
    for i, variant in enumerate(raw_variants):
        if not isinstance(variant, dict) or "value" not in variant:
            return None, f'{where} has variant {i + 1} without a value ({{"value": …}})'
        values.append(variant["value"])
    wrong = [i for i, value in enumerate(values) if not _fits(value, value_type)]
    if wrong:
        which = "the baseline" if wrong[0] == 0 else f"variant {wrong[0]}"
        return None, (f"{where} is of type {value_type} ({_VALUE_TYPES[value_type]}), but {which} "
                      f"holds {values[wrong[0]]!r:.80}")
    return CustomFlag(key=key, value_type=value_type, baseline=values[0], variants=tuple(values[1:])), None


def collision_issues(
    experiences: Sequence[FlagExperience], entries: dict[str, ContentEntry]
) -> list[ContentIssue]:
    """One issue per flag key set by more than one experience: the front end reads the first change
    with the key, so which experience wins depends on the order changes are listed in (Vary lists
    them by experience entry id)."""
    by_key: dict[str, list[str]] = {}
    for experience in experiences:
        for flag in experience.flags:
            by_key.setdefault(flag.key, []).append(experience.entry_id)
    issues: list[ContentIssue] = []
    for key, ids in by_key.items():
        if len(ids) < 2:
            continue
        entry = entries[ids[0]]
        others = ", ".join(f'"{i}"' for i in ids[1:])
        issues.append(ContentIssue(
            entry_id=entry.id,
            content_type=entry.content_type,
            problem=(f'The custom flag "{key}" is set by this experience and by {others}. A front end reads '
                     "the first change with that key; Vary lists changes by experience entry id, so for a "
                     "visitor in several of them this one wins."),
            fix="Give each experience's flag its own key (and read that key in the front end).",
        ))
    return issues
