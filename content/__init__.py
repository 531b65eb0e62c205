"""Content from Contentful, compiled into an immutable snapshot that requests read.

``content`` knows nothing about visitors: it loads a space (:class:`ContentSource`), compiles it
(:func:`compile_snapshot`) into a :class:`ContentSnapshot` — entries by id and locale with links
resolved, experiences and audiences compiled into ``personalization.types`` — and reports what is
mis-modelled as :class:`ContentIssue` values a marketer can act on. A :class:`SyncingSource` pulls only
what changed since a token (:class:`SyncResult`); ``content.retry``, ``content.store`` and
``content.preview`` retry failed loads, keep the last good items in Redis, and serve drafts.
"""

from content.compile import compile_snapshot
from content.errors import ContentAccessError, ContentFormatError, ContentSourceError
from content.items import ContentItems
from content.snapshot import ContentEntry, ContentIssue, ContentSnapshot
from content.sources import (
    ContentfulSource,
    ContentSource,
    ExportFileSource,
    SyncingSource,
    SyncResult,
    demo_space_path,
)

__all__ = [
    "ContentSnapshot",
    "ContentEntry",
    "ContentIssue",
    "ContentItems",
    "compile_snapshot",
    "ContentSource",
    "SyncingSource",
    "SyncResult",
    "ExportFileSource",
    "ContentfulSource",
    "demo_space_path",
    "ContentSourceError",
    "ContentAccessError",
    "ContentFormatError",
]
