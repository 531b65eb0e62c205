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
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

import msgspec
from msgspec import Struct

from content.errors import ContentAccessError, ContentFormatError, ContentSourceError
from content.items import (
    ContentAsset,
    ContentItems,
    ContentLocale,
    ContentTypeInfo,
    asset_from_json,
    content_type_from_json,
    entry_from_json,
    locale_from_json,
)
from content.snapshot import ContentEntry

__all__ = [
    "ContentSource",
    "SyncingSource",
    "SyncResult",
    "ExportFileSource",
    "ContentfulSource",
    "ContentfulAPI",
    "demo_space_path",
    "items_from_export",
    "count_changes",
]

log = logging.getLogger("vary.content")

_JSON = msgspec.json.Decoder()
_PAGE_LIMIT = 1000  # the CDA's maximum page size for collections
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
    """The published content of a space export (the parsed JSON of ``contentful space export``)."""
    if not isinstance(data, dict) or not ({"entries", "contentTypes"} & data.keys()):
        raise ContentFormatError(
            "not a Contentful space export: expected an object with "
            "'contentTypes', 'entries', 'assets' and 'locales'"
        )
    return ContentItems(
        content_types=_content_types(_list(data, "contentTypes")),
        locales=tuple(locale_from_json(item) for item in _list(data, "locales")),
        entries=tuple(entry_from_json(item) for item in _list(data, "entries") if _published(item)),
        assets=tuple(asset_from_json(item) for item in _list(data, "assets") if _published(item)),
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


class ContentfulAPI:
    """One space through the official ``contentful`` SDK: requests, paging and error mapping.

    Shared by :class:`ContentfulSource` (delivery, Sync API) and
    :class:`~content.preview.PreviewSource` (Preview API, collection queries). ``token_kind`` names
    the token in error messages ("Content Delivery API" or "Content Preview API").

    The SDK runs with ``raw_mode=True`` and ``content_type_cache=False``, and the callers parse the
    JSON themselves. Why:

    - Sync items (and ``locale=*`` collections) are already what the compiler wants (locale-keyed
      fields, unresolved links). Hydrated ``Entry`` objects would coerce Dates to ``datetime``, rename
      fields to snake_case and resolve links we resolve ourselves anyway.
    - The SDK's content-type cache is process-wide and keyed by space id only; a raw-mode client
      would fill it with a ``requests.Response`` and break any hydrating client for the same space.
      Without the cache, the constructor does no I/O either.
    - Still the real client: its URLs, auth header, user agent, timeouts, 429 retries honouring
      ``X-Contentful-RateLimit-Reset``, and its error classes (chained as ``__cause__`` of ours).
    """

    def __init__(
        self,
        space_id: str,
        access_token: str,
        *,
        environment: str = "master",
        api_url: str = "cdn.contentful.com",
        https: bool = True,
        timeout_s: float = 5.0,
        max_rate_limit_retries: int = 1,
        max_rate_limit_wait: int = 60,
        token_kind: str = "Content Delivery API",
    ) -> None:
        self.space_id = space_id
        self.environment = environment
        self.api_url = api_url
        self.https = https
        self.timeout_s = timeout_s
        self.max_rate_limit_retries = max_rate_limit_retries
        self.max_rate_limit_wait = max_rate_limit_wait
        self.token_kind = token_kind
        self._access_token = access_token
        self._client: Any = None

    @property
    def where(self) -> str:
        return f"space {self.space_id!r} (environment {self.environment!r}) at {self.api_url}"

    @property
    def client(self) -> Any:
        """The SDK client, created on first use (no I/O)."""
        if self._client is None:
            import contentful

            self._client = contentful.Client(
                self.space_id,
                self._access_token,
                api_url=self.api_url,
                environment=self.environment,
                https=self.https,
                timeout_s=self.timeout_s,
                raw_mode=True,
                content_type_cache=False,
                max_rate_limit_retries=self.max_rate_limit_retries,
                max_rate_limit_wait=self.max_rate_limit_wait,
                application_name="vary",
                application_version=_vary_version(),
            )
        return self._client

    def locales(self) -> tuple[ContentLocale, ...]:
        """The space's locales (``/locales``)."""
        return tuple(locale_from_json(item) for item in self.collection("locales", self.client.locales))

    def content_types(self) -> dict[str, ContentTypeInfo]:
        """The space's content types by id (``/content_types``)."""
        return _content_types(self.collection("content types", self.client.content_types))

    def collection(
        self,
        what: str,
        fetch: Callable[[dict[str, Any]], Any],
        query: Mapping[str, Any] | None = None,
        limit: int = _PAGE_LIMIT,
    ) -> list[dict[str, Any]]:
        """All items of a collection (``/locales``, ``/entries?…``), page by page with ``skip``."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.request(what, fetch, {**(query or {}), "limit": limit, "skip": len(items)})
            batch = _items(page)
            items.extend(batch)
            total = page.get("total")
            if not batch or not isinstance(total, int) or len(items) >= total:
                return items

    def request(
        self, what: str, fetch: Callable[[dict[str, Any]], Any], query: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One SDK request; its response JSON, or one of our errors with the SDK's as the cause."""
        import requests
        from contentful.errors import RateLimitExceededError, get_error

        where = self.where
        try:
            response = fetch(dict(query))
        except RateLimitExceededError as error:  # still limited after the SDK's own waits
            raise ContentSourceError(
                f"Contentful rate-limited the {what} request for {where}; try again later", status=429
            ) from error
        except KeyError as error:  # contentful 2.5: a 429 without X-Contentful-RateLimit-Reset
            raise ContentSourceError(
                f"Contentful rate-limited the {what} request for {where}; try again later", status=429
            ) from error
        except requests.RequestException as error:  # connection refused, timeout, reset, …
            raise ContentSourceError(f"could not reach Contentful for {where}: {error}") from error

        status = response.status_code
        if status != 200:
            error = get_error(response)
            detail = _error_message(response)
            if status in (401, 403):
                raise ContentAccessError(
                    f"Contentful refused the access token for {where} (HTTP {status}: {detail}). "
                    f"Check the space id and the {self.token_kind} token.",
                    status=status,
                ) from error
            if status == 404 and what in ("locales", "content types"):
                raise ContentAccessError(
                    f"Contentful does not know {where} (HTTP 404: {detail}). "
                    "Check the space id and the environment.",
                    status=status,
                ) from error
            raise ContentSourceError(
                f"Contentful answered the {what} request for {where} with HTTP {status}: {detail}",
                status=status,
            ) from error
        try:
            data = _JSON.decode(response.content)
        except msgspec.DecodeError as error:
            raise ContentFormatError(
                f"Contentful's {what} response for {where} is not JSON: {error}"
            ) from error
        if not isinstance(data, dict):
            raise ContentFormatError(f"Contentful's {what} response for {where} is not an object")
        return data


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
        self.api = ContentfulAPI(
            space_id,
            access_token,
            environment=environment,
            api_url=api_url,
            https=https,
            timeout_s=timeout_s,
            max_rate_limit_retries=max_rate_limit_retries,
            max_rate_limit_wait=max_rate_limit_wait,
        )
        self.space_id = space_id
        self.environment = environment
        self.api_url = api_url
        self.https = https
        self.timeout_s = timeout_s
        #: Token of the last completed sync: where an incremental sync would continue.
        self.sync_token: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"ContentfulSource(space_id={self.space_id!r}, environment={self.environment!r}, "
            f"api_url={self.api_url!r})"
        )

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
            _apply_sync_items(_items(page), entries, assets)
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


def _items(page: dict[str, Any]) -> list[Any]:
    items = page.get("items") or []
    if not isinstance(items, list):
        raise ContentFormatError("a Contentful response has 'items' that are not a list")
    return items


def _content_types(items: Iterable[Any]) -> dict[str, ContentTypeInfo]:
    parsed = (content_type_from_json(item) for item in items)
    return {content_type.id: content_type for content_type in parsed}


def _sync_token(url: object) -> str:
    """The ``sync_token`` query parameter of a ``nextPageUrl``/``nextSyncUrl`` (as the SDK reads it)."""
    if not isinstance(url, str) or not url:
        raise ContentFormatError("Contentful's sync response has neither nextPageUrl nor nextSyncUrl")
    tokens = parse_qs(urlsplit(url).query).get("sync_token")
    if not tokens:
        raise ContentFormatError(f"Contentful's sync URL carries no sync_token: {url}")
    return tokens[0]


def _error_message(response: Any) -> str:
    """Contentful's error ``message`` (``{"sys": {"type": "Error", …}, "message": …}``) or the body."""
    try:
        body = _JSON.decode(response.content)
    except msgspec.DecodeError:
        return response.text[:200] or response.reason or "no details"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(body)[:200]


def _vary_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vary")
    except PackageNotFoundError:
        return None
