"""Audiences that name segments the serving model does not score.

The content compiler cannot know which segments exist — the model decides that, and models change
without content changing. This check runs against the active model's segment names whenever a
marketer asks for content issues, so an audience built on a typo (``price_sensitve``) or on a segment
a new model dropped is reported instead of silently matching nobody.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from content.snapshot import ContentIssue, ContentSnapshot

__all__ = ["segment_names_in", "unknown_segment_issues"]


def segment_names_in(condition: object) -> Iterator[str]:
    """Every ``segments.<name>`` a GrowthBook condition reads, at any depth."""
    if isinstance(condition, dict):
        for key, value in condition.items():
            if isinstance(key, str) and key.startswith("segments."):
                yield key.split(".", 2)[1]
            yield from segment_names_in(value)
    elif isinstance(condition, list):
        for item in condition:
            yield from segment_names_in(item)


def unknown_segment_issues(snapshot: ContentSnapshot, known: Collection[str]) -> list[ContentIssue]:
    """One issue per audience that reads a segment outside ``known`` (the active model's segments)."""
    issues: list[ContentIssue] = []
    choices = ", ".join(sorted(known)) or "none: no segment model is active"
    for audience_id, audience in sorted(snapshot.audiences.items()):
        unknown = sorted({name for name in segment_names_in(audience.condition) if name not in known})
        if unknown:
            issues.append(
                ContentIssue(
                    entry_id=audience_id,
                    content_type="varyAudience",
                    problem=f"Audience '{audience.name}' uses segment(s) the model does not score: "
                    + ", ".join(unknown)
                    + "; it matches nobody.",
                    fix=f"Use one of the model's segments ({choices}), or train a model that scores it.",
                )
            )
    return issues
