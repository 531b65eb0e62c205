"""The space's own Vary settings: an optional ``varySettings`` entry, read into the snapshot.

Today it holds one thing, ``goals``: the conversion goals the space declares. Experiences without a
``goals`` list of their own (Ninetailed's have none) count these — never whatever goal name a
visitor's browser sends (measurement turns the list into what each experience counts; content only
reads it). No entry, or an entry without the field or with an empty list, leaves ``goals``
undeclared (``None``) and measurement uses its small default.

A space should have one such entry; with several, the first published wins and the others are
reported as :class:`~content.snapshot.ContentIssue` values, as are malformed goal lists.
"""

from __future__ import annotations

from content.experiences.base import issue
from content.items import ContentItems
from content.snapshot import ContentIssue

__all__ = ["SETTINGS_TYPE", "MAX_SPACE_GOALS", "compile_settings"]

SETTINGS_TYPE = "varySettings"
#: Declared goals beyond this many are left out (each becomes a results section per experience).
MAX_SPACE_GOALS = 32
#: As long as a conversion event's goal may be.
MAX_GOAL_LENGTH = 128
_FIX = "Make Goals a list of short names, e.g. purchase, signup."


def compile_settings(items: ContentItems, default_locale: str) -> tuple[tuple[str, ...] | None, list[ContentIssue]]:
    """The space's declared goals (``None``: none declared) and the issues found reading them."""
    entries = sorted(
        (e for e in items.entries if e.content_type == SETTINGS_TYPE), key=lambda e: (e.created_at, e.id)
    )
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
    goals = list(dict.fromkeys(g for g in goals if len(g) <= MAX_GOAL_LENGTH))
    if len(goals) > MAX_SPACE_GOALS:
        issues.append(issue(entry, f"More than {MAX_SPACE_GOALS} goals are declared; the first "
                                   f"{MAX_SPACE_GOALS} are counted.", "Declare fewer goals."))
    return tuple(goals[:MAX_SPACE_GOALS]) or None, issues  # an emptied list: the default again
