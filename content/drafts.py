"""Entries served from an export that holds unpublished changes, reported as content issues.

``contentful space export`` writes each entry's latest version, so an entry edited after it was
published arrives as its DRAFT — and would be served as live without a word. The export source
records such entries (:class:`~content.items.ContentDraft`); this turns them into issues for
``GET /v1/content/issues``.
"""

from __future__ import annotations

from content.items import ContentItems
from content.snapshot import ContentIssue

__all__ = ["draft_issues"]


def draft_issues(items: ContentItems) -> tuple[ContentIssue, ...]:
    """One issue per entry whose export holds unpublished changes, in entry id order."""
    return tuple(
        ContentIssue(
            entry_id=draft.entry_id,
            content_type=draft.content_type,
            problem=(
                f"the export holds unpublished changes of this entry (version {draft.version}, "
                f"published version {draft.published_version}): `contentful space export` writes the "
                "latest draft, and Vary serves it as if it were published"
            ),
            fix=(
                "publish the entry (or discard its changes) in Contentful and export again, or serve "
                "the space live (VARY_CONTENT_SOURCE=contentful), which only ever sees published content"
            ),
        )
        for draft in sorted(items.drafts, key=lambda draft: draft.entry_id)
    )
