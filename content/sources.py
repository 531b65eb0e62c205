"""Where content comes from: the :class:`ContentSource` seam and its two implementations.

A source does one blocking thing — ``load()`` the whole published space as
:class:`~content.items.ContentItems` — and the caller compiles the result. The API runs ``load()`` off
the event loop (``anyio.to_thread``) and never on the request path. A failed load raises a
:class:`~content.errors.ContentSourceError` and the last good snapshot keeps serving.

- :class:`ExportFileSource` reads a ``contentful space export`` file: the bundled demo space
  (:func:`demo_space_path`) or a user's own export.
- :class:`ContentfulSource` pulls a live space with the official ``contentful`` SDK over the Sync API.

Developers add their own by implementing the Protocol (any object with ``load() -> ContentItems``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

import msgspec

from content.errors import ContentAccessError, ContentFormatError, ContentSourceError
from content.items import (
    ContentAsset,
    ContentItems,
    ContentTypeInfo,
    asset_from_json,
    content_type_from_json,
    entry_from_json,
    locale_from_json,
)
from content.snapshot import ContentEntry

__all__ = [
    "ContentSource",
    "ExportFileSource",
    "ContentfulSource",
    "demo_space_path",
    "items_from_export",
]

_JSON = msgspec.json.Decoder()
_PAGE_LIMIT = 1000  # the CDA's maximum page size for collections
_MAX_SYNC_PAGES = 100_000  # a guard against a server that never stops paging


@runtime_checkable
class ContentSource(Protocol):
    """Loads a whole published space. Blocking: call it from a worker thread."""

    def load(self) -> ContentItems:
        """Everything published, normalized; raises ``ContentSourceError`` when it cannot."""
        ...


def demo_space_path() -> Path:
    """The demo space bundled with Vary (Contentful export format), used when nothing is configured."""
    return Path(__file__).with_name("demo") / "space.json"


class ExportFileSource:
    """A ``contentful space export`` JSON file (top-level ``contentTypes``, ``entries``, ``assets``,
    ``locales``, …; management-format items with locale-keyed fields).

    Only published items are served: those with ``sys.publishedVersion``. Note that an export holds
    each entry's *latest* fields; for an entry with unpublished changes those are the draft's.
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


class ContentfulSource:
    """A live space, through the official ``contentful`` SDK and the Sync API.

    One ``load()`` fetches ``/locales`` and ``/content_types``, then runs an initial sync, following
    ``nextPageUrl`` until the response carries ``nextSyncUrl``; the token of that URL is kept as
    :attr:`sync_token` for incremental syncs (the SDK does not page by itself: ``SyncPage`` only exposes
    the URLs, and ``SyncPage.next()`` is one more request).

    The SDK runs with ``raw_mode=True`` and ``content_type_cache=False``, and this class parses the
    JSON itself. Why:

    - Sync items are already what the compiler wants (locale-keyed fields, unresolved links). Hydrated
      ``Entry`` objects would coerce Dates to ``datetime``, rename fields to snake_case and resolve
      links we resolve ourselves anyway, so we would convert everything back.
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
        environment: str = "master",
        api_url: str = "cdn.contentful.com",
        https: bool = True,
        timeout_s: float = 5.0,
        *,
        max_rate_limit_retries: int = 1,
        max_rate_limit_wait: int = 60,
    ) -> None:
        self.space_id = space_id
        self.environment = environment
        self.api_url = api_url
        self.https = https
        self.timeout_s = timeout_s
        self.max_rate_limit_retries = max_rate_limit_retries
        self.max_rate_limit_wait = max_rate_limit_wait
        #: Token of the last completed sync: where an incremental sync would continue.
        self.sync_token: str | None = None
        self._access_token = access_token
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"ContentfulSource(space_id={self.space_id!r}, environment={self.environment!r}, "
            f"api_url={self.api_url!r})"
        )

    def load(self) -> ContentItems:
        with self._lock:
            client = self._sdk_client()
            locales = tuple(locale_from_json(i) for i in self._collection("locales", client.locales))
            content_types = _content_types(self._collection("content types", client.content_types))
            entries, assets, token = self._initial_sync(client)
            self.sync_token = token
        return ContentItems(
            content_types=content_types, locales=locales, entries=entries, assets=assets
        )

    # -- internals -------------------------------------------------------------------------------

    def _sdk_client(self) -> Any:
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

    def _initial_sync(
        self, client: Any
    ) -> tuple[tuple[ContentEntry, ...], tuple[ContentAsset, ...], str]:
        entries: dict[str, ContentEntry] = {}
        assets: dict[str, ContentAsset] = {}
        page = self._call("sync", client.sync, {"initial": True})
        seen_tokens: set[str] = set()
        for _ in range(_MAX_SYNC_PAGES):
            for item in _items(page):
                kind = item.get("sys", {}).get("type") if isinstance(item, dict) else None
                if kind == "Entry":
                    entry = entry_from_json(item)
                    entries[entry.id] = entry
                elif kind == "Asset":
                    asset = asset_from_json(item)
                    assets[asset.id] = asset
                elif kind in ("DeletedEntry", "DeletedAsset"):
                    entries.pop(item["sys"].get("id"), None)
                    assets.pop(item["sys"].get("id"), None)
            next_page = page.get("nextPageUrl")
            if not next_page:
                token = _sync_token(page.get("nextSyncUrl"))
                return tuple(entries.values()), tuple(assets.values()), token
            token = _sync_token(next_page)
            if token in seen_tokens:
                raise ContentSourceError("Contentful's sync kept returning the same page")
            seen_tokens.add(token)
            page = self._call("sync", client.sync, {"sync_token": token})
        raise ContentSourceError(f"Contentful's sync did not finish within {_MAX_SYNC_PAGES} pages")

    def _collection(self, what: str, fetch: Callable[[dict[str, Any]], Any]) -> list[dict[str, Any]]:
        """All items of a CDA collection (``/locales``, ``/content_types``), page by page."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._call(what, fetch, {"limit": _PAGE_LIMIT, "skip": len(items)})
            batch = _items(page)
            items.extend(batch)
            total = page.get("total")
            if not batch or not isinstance(total, int) or len(items) >= total:
                return items

    def _call(
        self, what: str, fetch: Callable[[dict[str, Any]], Any], query: dict[str, Any]
    ) -> dict[str, Any]:
        """One SDK request; its response JSON, or one of our errors with the SDK's as the cause."""
        import requests
        from contentful.errors import RateLimitExceededError, get_error

        where = f"space {self.space_id!r} (environment {self.environment!r}) at {self.api_url}"
        try:
            response = fetch(dict(query))
        except RateLimitExceededError as error:
            raise ContentSourceError(
                f"Contentful rate-limited the {what} request for {where}; try again later", status=429
            ) from error
        except KeyError as error:  # contentful 2.5: a 429 without X-Contentful-RateLimit-Reset
            raise ContentSourceError(
                f"Contentful rate-limited the {what} request for {where}; try again later", status=429
            ) from error
        except requests.RequestException as error:
            raise ContentSourceError(f"could not reach Contentful for {where}: {error}") from error

        status = response.status_code
        if status != 200:
            error = get_error(response)
            detail = _error_message(response)
            if status in (401, 403):
                raise ContentAccessError(
                    f"Contentful refused the access token for {where} (HTTP {status}: {detail}). "
                    "Check the space id and the Content Delivery API token.",
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
