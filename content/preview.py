"""Drafts, for editors who want to see a change before they publish it.

Contentful's Content Preview API serves the latest version of every entry and asset — drafts,
changed-but-unpublished and published alike — through the same collection endpoints as the
delivery API, but it has **no Sync API**. So :class:`PreviewSource` pulls the whole space with
``/entries?locale=*`` and ``/assets?locale=*`` page by page (``locale=*`` keeps fields keyed by
locale, as the compiler wants them), and :class:`PreviewCache` compiles the result and keeps it a few
seconds: a preview request never waits for more than one load, and a page of previews does not
multiply requests to an API limited to ~14 requests per second.

Preview is served only to editors (admin keys); it never touches the published snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from content.compile import DEFAULT_LINK_DEPTH, compile_snapshot
from content.contentful_api import ContentfulAPI, SpaceConnection
from content.errors import ContentSourceError
from content.experiences import ConditionValidator
from content.items import ContentItems, asset_from_json, entry_from_json
from content.snapshot import ContentSnapshot
from content.sources import ContentSource

__all__ = ["PreviewSource", "PreviewCache", "PREVIEW_API_URL"]

PREVIEW_API_URL = "preview.contentful.com"
_PAGE_LIMIT = 1000  # the maximum; a space with very large entries may need less (HTTP 400 otherwise)


class PreviewSource:
    """The latest draft of every entry and asset of a space, through the Content Preview API.

    Every draft counts as servable, published or not. Blocking, like every
    :class:`~content.sources.ContentSource`; raises :class:`~content.errors.ContentSourceError`.
    """

    def __init__(
        self,
        space_id: str,
        preview_token: str,
        environment: str = "master",
        api_url: str = PREVIEW_API_URL,
        https: bool = True,
        timeout_s: float = 5.0,
        *,
        page_limit: int = _PAGE_LIMIT,
    ) -> None:
        connection = SpaceConnection(
            space_id=space_id, environment=environment, api_url=api_url, https=https, timeout_s=timeout_s
        )
        self.api = ContentfulAPI(connection, preview_token, token_kind="Content Preview API")
        self.page_limit = page_limit
        self._lock = threading.Lock()  # one SDK client, one load at a time

    def __repr__(self) -> str:
        return self.api.repr_as("PreviewSource")

    def load(self) -> ContentItems:
        with self._lock:
            api, client = self.api, self.api.client
            query = {"locale": "*", "include": 0, "order": "sys.id"}  # stable order for skip paging
            locales = api.locales()
            content_types = api.content_types()
            entries = api.collection("entries", client.entries, query, limit=self.page_limit)
            assets = api.collection("assets", client.assets, query, limit=self.page_limit)
        return ContentItems(
            content_types=content_types,
            locales=locales,
            entries=tuple(entry_from_json(item) for item in entries),
            assets=tuple(asset_from_json(item) for item in assets),
        )


class PreviewCache:
    """A compiled preview snapshot, reloaded when it is older than ``ttl_s``. Thread-safe.

    Concurrent callers share one reload (the others wait for it). A failed reload raises
    :class:`~content.errors.ContentSourceError`, and the same error is raised again for
    ``error_ttl_s`` without calling Contentful, so an outage is not hammered by every preview
    request.
    """

    def __init__(
        self,
        source: ContentSource,
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        error_ttl_s: float = 1.0,
        link_depth: int = DEFAULT_LINK_DEPTH,
        plugin_types: frozenset[str] = frozenset(),
        validate_condition: ConditionValidator | None = None,
    ) -> None:
        self.source = source
        self.ttl_s = ttl_s
        self.error_ttl_s = error_ttl_s
        self.link_depth = link_depth
        self.plugin_types = plugin_types
        self.validate_condition = validate_condition
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[ContentSnapshot, float] | None = None  # (snapshot, loaded at): one read
        self._error: ContentSourceError | None = None
        self._failed_at = 0.0

    def get(self) -> ContentSnapshot:
        """The preview snapshot, at most ``ttl_s`` old; loads and compiles it when it is older."""
        snapshot = self._fresh()
        if snapshot is not None:
            return snapshot
        with self._lock:
            snapshot = self._fresh()  # another thread may have reloaded while we waited
            if snapshot is not None:
                return snapshot
            now = self._clock()
            error = self._error
            if error is not None and now - self._failed_at < self.error_ttl_s:
                raise type(error)(str(error), status=error.status) from error
            try:
                snapshot = compile_snapshot(
                    self.source.load(),
                    link_depth=self.link_depth,
                    plugin_types=self.plugin_types,
                    validate_condition=self.validate_condition,
                )
            except ContentSourceError as error:
                self._error, self._failed_at = error, self._clock()
                raise
            self._cached, self._error = (snapshot, self._clock()), None
            return snapshot

    def invalidate(self) -> None:
        """Forget the cached snapshot (and error): the next :meth:`get` loads again."""
        with self._lock:
            self._cached, self._error = None, None

    def _fresh(self) -> ContentSnapshot | None:
        cached = self._cached
        if cached is not None and self._clock() - cached[1] < self.ttl_s:
            return cached[0]
        return None
