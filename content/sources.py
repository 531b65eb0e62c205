"""Where content comes from: the :class:`ContentSource` seam and its two implementations.

A source does one blocking thing — ``load()`` the whole published space as
:class:`~content.items.ContentItems` — and the caller compiles the result. The API runs it off the
event loop (``anyio.to_thread``) and never on the request path. A failed load raises a
:class:`~content.errors.ContentSourceError` and the last good snapshot keeps serving.

A :class:`SyncingSource` can also ``sync(previous, token)``: bring ``previous`` up to date from where
``token`` left off and say how much changed (:class:`SyncResult`), so a poll that finds nothing costs
a few small requests and no recompile.

- :class:`ExportFileSource` reads a ``contentful space export`` file: the bundled demo space
  (:func:`demo_space_path`) or a user's own export. Its sync token is the file's mtime and size.
- :class:`ContentfulSource` pulls a live space with the official ``contentful`` SDK over the Sync API.

Developers add their own by implementing the Protocol (any object with ``load() -> ContentItems``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

import msgspec
from msgspec import Struct

from content.contentful_api import (
    ContentfulAPI,
    SpaceConnection,
    content_types_by_id,
    page_items,
)
from content.errors import ContentFormatError, ContentSourceError
from content.items import (
    ContentAsset,
    ContentItems,
    asset_from_json,
    draft_from_json,
    entry_from_json,
    locale_from_json,
)
from content.snapshot import ContentEntry

__all__ = [
    "ContentSource",
    "ContentfulSource",
    "ExportFileSource",
    "SyncResult",
    "SyncingSource",
    "count_changes",
    "demo_space_path",
    "items_from_export",
]

log = logging.getLogger("vary.content")

_JSON = msgspec.json.Decoder()
_MAX_SYNC_PAGES = 100_000  # a guard against a server that never stops paging


@runtime_checkable
class ContentSource(Protocol):
    """Loads a whole published space. Blocking: call it from a worker thread."""

    def load(self) -> ContentItems:
        """Everything published, normalized; raises ``ContentSourceError`` when it cannot."""
        ...


class SyncResult(Struct, frozen=True, kw_only=True):
    """The outcome of one :meth:`SyncingSource.sync`.

    ``items`` is the whole space after the sync (a new object; the previous one is never changed).
    ``token`` is where the next sync continues. ``changed`` counts the entries, assets, content types
    and locales that differ from ``previous`` (created, updated or deleted): 0 means there is nothing
    to recompile. ``full`` is True when the items were loaded from scratch (an initial sync, a
    re-read file) rather than patched.
    """

    items: ContentItems
    token: str | None
    changed: int
    full: bool


@runtime_checkable
class SyncingSource(ContentSource, Protocol):
    """A source that can bring earlier content up to date instead of loading everything again."""

    def sync(self, previous: ContentItems | None, token: str | None) -> SyncResult:
        """``previous`` brought up to date from ``token`` (both ``None``: a full load). Blocking."""
        ...


def demo_space_path() -> Path:
    """The demo space bundled with Vary (Contentful export format), used when nothing is configured."""
    return Path(__file__).with_name("demo") / "space.json"


class ExportFileSource:
    """A ``contentful space export`` JSON file (top-level ``contentTypes``, ``entries``, ``assets``,
    ``locales``, …; management-format items with locale-keyed fields).

    Only published items are served: those with ``sys.publishedVersion``. Note that an export holds
    each entry's *latest* fields; for an entry with unpublished changes those are the draft's.

    :meth:`sync` re-reads the file only when its modification time or size changed: the token is
    ``"{mtime_ns}:{size}"``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ExportFileSource({str(self.path)!r})"

    def load(self) -> ContentItems:
        try:
            data = _JSON.decode(self.path.read_bytes())
        except OSError as error:
            raise ContentSourceError(f"cannot read the export file {self.path}: {error}") from error
        except msgspec.DecodeError as error:
            raise ContentFormatError(f"{self.path} is not valid JSON: {error}") from error
        try:
            return items_from_export(data)
        except ContentFormatError as error:
            raise ContentFormatError(f"{self.path}: {error}") from error

    def sync(self, previous: ContentItems | None, token: str | None) -> SyncResult:
        # Stat before reading: if the file changes in between, the next sync sees a new stamp.
        try:
            stat = self.path.stat()
        except OSError as error:
            raise ContentSourceError(f"cannot read the export file {self.path}: {error}") from error
        stamp = f"{stat.st_mtime_ns}:{stat.st_size}"
        if previous is not None and token == stamp:
            return SyncResult(items=previous, token=stamp, changed=0, full=False)
        items = self.load()
        return SyncResult(items=items, token=stamp, changed=count_changes(previous, items), full=True)


def items_from_export(data: object) -> ContentItems:
    """The published content of a space export (the parsed JSON of ``contentful space export``).

    An export holds each entry's latest version, which for an entry with unpublished changes is the
    DRAFT (the export tool's known behaviour): such entries are listed in ``drafts`` and reported as
    content issues, and their draft is what is served — re-export after publishing, or use the live
    source, to serve exactly what is published.
    """
    if not isinstance(data, dict) or not ({"entries", "contentTypes"} & data.keys()):
        raise ContentFormatError(
            "not a Contentful space export: expected an object with "
            "'contentTypes', 'entries', 'assets' and 'locales'"
        )
    return ContentItems(
        content_types=content_types_by_id(_list(data, "contentTypes")),
        locales=tuple(locale_from_json(item) for item in _list(data, "locales")),
        entries=tuple(entry_from_json(item) for item in _list(data, "entries") if _published(item)),
        assets=tuple(asset_from_json(item) for item in _list(data, "assets") if _published(item)),
        drafts=tuple(
            draft
            for item in _list(data, "entries")
            if _published(item) and (draft := draft_from_json(item)) is not None
        ),
    )


def count_changes(previous: ContentItems | None, items: ContentItems) -> int:
    """How many entries, assets, content types and locales were created, updated or deleted
    between ``previous`` (``None``: nothing) and ``items``."""
    if previous is None:
        return len(items.entries) + len(items.assets) + len(items.content_types) + len(items.locales)
    return (
        _differences({e.id: e for e in previous.entries}, {e.id: e for e in items.entries})
        + _differences({a.id: a for a in previous.assets}, {a.id: a for a in items.assets})
        + _differences(previous.content_types, items.content_types)
        + _differences({loc.code: loc for loc in previous.locales}, {loc.code: loc for loc in items.locales})
    )


class ContentfulSource:
    """A live space, through the official ``contentful`` SDK and the Sync API.

    Every :meth:`sync` fetches ``/locales`` and ``/content_types`` (two small requests, so a new
    field or locale is picked up), then runs the Sync API: an initial sync without a token, else
    ``sync_token=…`` for the changes since. Either way it follows ``nextPageUrl`` until a response
    carries ``nextSyncUrl``, whose token is returned (and kept as :attr:`sync_token`). The SDK does
    not page by itself: ``SyncPage`` only exposes the URLs.

    Changes are applied to a copy of ``previous``: ``Entry``/``Asset`` items replace by id,
    ``DeletedEntry``/``DeletedAsset`` tombstones (sent for unpublished and deleted entities) remove.
    A token Contentful rejects (HTTP 400: expired or from another space) falls back to an initial
    sync. A failure part-way raises and returns nothing: the caller keeps its items and token, and
    syncing again from the same token is safe.
    """

    def __init__(
        self,
        space_id: str,
        access_token: str,
        environment: str = "master",
        api_url: str = "cdn.contentful.com",
        https: bool = True,
        timeout_s: float = 5.0,
        *,
        max_rate_limit_retries: int = 1,
        max_rate_limit_wait: int = 60,
    ) -> None:
        connection = SpaceConnection(
            space_id=space_id,
            environment=environment,
            api_url=api_url,
            https=https,
            timeout_s=timeout_s,
            max_rate_limit_retries=max_rate_limit_retries,
            max_rate_limit_wait=max_rate_limit_wait,
        )
        self.api = ContentfulAPI(connection, access_token)
        #: Token of the last completed sync: where an incremental sync would continue.
        self.sync_token: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return self.api.repr_as("ContentfulSource")

    def load(self) -> ContentItems:
        return self.sync(None, None).items

    def sync(self, previous: ContentItems | None, token: str | None) -> SyncResult:
        with self._lock:
            locales = self.api.locales()
            content_types = self.api.content_types()
            entries, assets, next_token, full = self._entities_since(previous, token)
            items = ContentItems(
                content_types=content_types,
                locales=locales,
                entries=tuple(entries.values()),
                assets=tuple(assets.values()),
            )
            self.sync_token = next_token
        return SyncResult(
            items=items, token=next_token, changed=count_changes(previous, items), full=full
        )

    # -- internals -------------------------------------------------------------------------------

    def _entities_since(
        self, previous: ContentItems | None, token: str | None
    ) -> tuple[dict[str, ContentEntry], dict[str, ContentAsset], str, bool]:
        """(entries, assets, next token, full): a delta sync applied to ``previous``, or an initial one."""
        if previous is not None and token is not None:
            entries = {entry.id: entry for entry in previous.entries}
            assets = {asset.id: asset for asset in previous.assets}
            try:
                return entries, assets, self._sync_pages({"sync_token": token}, entries, assets), False
            except ContentSourceError as error:
                if error.status != 400:
                    raise
                log.warning(
                    "Contentful rejected the sync token for %s (%s); starting an initial sync",
                    self.api.where, error,
                )
        entries, assets = {}, {}
        return entries, assets, self._sync_pages({"initial": True}, entries, assets), True

    def _sync_pages(
        self,
        query: dict[str, Any],
        entries: dict[str, ContentEntry],
        assets: dict[str, ContentAsset],
    ) -> str:
        """Run one sync from ``query`` to its end, applying every page; the next sync's token."""
        client = self.api.client
        page = self.api.request("sync", client.sync, query)
        seen_tokens: set[str] = set()
        for _ in range(_MAX_SYNC_PAGES):
            _apply_sync_items(page_items(page), entries, assets)
            next_page = page.get("nextPageUrl")
            if not next_page:
                return _sync_token(page.get("nextSyncUrl"))
            token = _sync_token(next_page)
            if token in seen_tokens:
                raise ContentSourceError("Contentful's sync kept returning the same page")
            seen_tokens.add(token)
            page = self.api.request("sync", client.sync, {"sync_token": token})
        raise ContentSourceError(f"Contentful's sync did not finish within {_MAX_SYNC_PAGES} pages")


def _apply_sync_items(
    items: list[Any], entries: dict[str, ContentEntry], assets: dict[str, ContentAsset]
) -> None:
    """Sync items applied in order: entities replace by id, tombstones remove."""
    for item in items:
        sys = item.get("sys") if isinstance(item, dict) else None
        if not isinstance(sys, dict):
            raise ContentFormatError(f"a sync item has no sys block: {item!r:.200}")
        kind = sys.get("type")
        if kind == "Entry":
            entry = entry_from_json(item)
            entries[entry.id] = entry
        elif kind == "Asset":
            asset = asset_from_json(item)
            assets[asset.id] = asset
        elif kind == "DeletedEntry":
            entries.pop(str(sys.get("id")), None)
        elif kind == "DeletedAsset":
            assets.pop(str(sys.get("id")), None)
        else:
            log.debug("ignoring a sync item of type %r", kind)


def _differences(before: Mapping[Hashable, object], after: Mapping[Hashable, object]) -> int:
    """Keys added, removed, or holding a different value."""
    changed = sum(1 for key, value in after.items() if before.get(key) != value)
    return changed + sum(1 for key in before if key not in after)


def _published(item: object) -> bool:
    return isinstance(item, dict) and bool((item.get("sys") or {}).get("publishedVersion"))


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise ContentFormatError(f"'{key}' in the export file is not a list")
    return value


def _sync_token(url: object) -> str:
    """The ``sync_token`` query parameter of a ``nextPageUrl``/``nextSyncUrl`` (as the SDK reads it)."""
    if not isinstance(url, str) or not url:
        raise ContentFormatError("Contentful's sync response has neither nextPageUrl nor nextSyncUrl")
    tokens = parse_qs(urlsplit(url).query).get("sync_token")
    if not tokens:
        raise ContentFormatError(f"Contentful's sync URL carries no sync_token: {url}")
    return tokens[0]
