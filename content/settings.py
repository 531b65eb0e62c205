"""The space's own Vary settings: an optional ``varySettings`` entry, read into the snapshot.

It holds two things. ``goals``: the conversion goals the space declares. Experiences without a
``goals`` list of their own (Ninetailed's have none) count these — never whatever goal name a
visitor's browser sends (measurement turns the list into what each experience counts; content only
reads it). No entry, or an entry without the field or with an empty list, leaves ``goals``
undeclared (``None``) and measurement uses its small default. ``globalHoldout``: the share of
visitors (0 to 0.5) who see baseline content for every experience, so all personalization together
can be measured against them (``personalization`` serves it; the environment gives the fallback
when the space sets none). A share outside 0–0.5 is reported and treated as not set: a typo must not
hide every personalization from most visitors.

A space should have one such entry; with several, the first published wins and the others are
reported as :class:`~content.snapshot.ContentIssue` values, as are malformed goal lists.
"""

from __future__ import annotations

from content.experiences.base import is_number, issue
from content.items import ContentItems
from content.snapshot import ContentEntry, ContentIssue
from personalization.types import goal_name_problem

__all__ = ["SETTINGS_TYPE", "MAX_SPACE_GOALS", "MAX_GLOBAL_HOLDOUT", "compile_settings", "compile_global_holdout"]

SETTINGS_TYPE = "varySettings"
#: Declared goals beyond this many are left out (each becomes a results section per experience).
MAX_SPACE_GOALS = 32
#: As long as a conversion event's goal may be.
MAX_GOAL_LENGTH = 128
#: The largest global holdout a space may set: beyond half, "personalization" is the exception.
MAX_GLOBAL_HOLDOUT = 0.5
_FIX = "Make Goals a list of short names, e.g. purchase, signup."


def compile_settings(items: ContentItems, default_locale: str) -> tuple[tuple[str, ...] | None, list[ContentIssue]]:
    """The space's declared goals (``None``: none declared) and the issues found reading them."""
    entries = _settings_entries(items)
    issues: list[ContentIssue] = []
    for extra in entries[1:]:
        issues.append(issue(extra, f"The space has more than one settings entry; {entries[0].id} is used "
                                   "and this one is ignored.", "Delete the extra varySettings entry."))
    if not entries:
        return None, issues
    entry = entries[0]
    raw = entry.fields.get(default_locale, {}).get("goals")
    if raw is None:
        return None, issues
    if not isinstance(raw, list) or not all(isinstance(g, str) for g in raw):
        issues.append(issue(entry, "Goals is not a list of names; the default goals are counted.", _FIX))
        return None, issues
    goals = [g.strip() for g in raw if g.strip()]
    bad = [g for g in goals if len(g) > MAX_GOAL_LENGTH]
    if bad:
        issues.append(issue(entry, f"Goal names longer than {MAX_GOAL_LENGTH} characters are left out: "
                                   f"{', '.join(b[:40] for b in bad)}.", _FIX))
    reserved = [problem for g in goals if (problem := goal_name_problem(g)) is not None]
    for problem in reserved:
        issues.append(issue(entry, f"A goal is left out: {problem}.", _FIX))
    goals = list(dict.fromkeys(g for g in goals if len(g) <= MAX_GOAL_LENGTH and goal_name_problem(g) is None))
    if len(goals) > MAX_SPACE_GOALS:
        issues.append(issue(entry, f"More than {MAX_SPACE_GOALS} goals are declared; the first "
                                   f"{MAX_SPACE_GOALS} are counted.", "Declare fewer goals."))
    return tuple(goals[:MAX_SPACE_GOALS]) or None, issues  # an emptied list: the default again


def compile_global_holdout(items: ContentItems, default_locale: str) -> tuple[float | None, list[ContentIssue]]:
    """The space's global holdout share (``None``: not set, or set to something unusable) and the
    issue found reading it. Only the settings entry that is used is read (see :func:`compile_settings`)."""
    entries = _settings_entries(items)
    if not entries:
        return None, []
    entry = entries[0]
    raw = entry.fields.get(default_locale, {}).get("globalHoldout")
    if raw is None:
        return None, []
    if is_number(raw) and 0 <= raw <= MAX_GLOBAL_HOLDOUT:
        return float(raw), []
    return None, [issue(entry, f"Global holdout is {raw!r}; it is the share of visitors who see no "
                               f"personalization, between 0 and {MAX_GLOBAL_HOLDOUT:g}. It is ignored, so "
                               "the environment's setting (or none) applies.",
                        "Enter a share between 0 and 0.5, e.g. 0.05 for one visitor in twenty, or clear it.")]


def _settings_entries(items: ContentItems) -> list[ContentEntry]:
    """The space's settings entries, the one that is used (first published) first."""
    return sorted(
        (e for e in items.entries if e.content_type == SETTINGS_TYPE), key=lambda e: (e.created_at, e.id)
    )
