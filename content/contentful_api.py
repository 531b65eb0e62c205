"""One Contentful space through the official ``contentful`` SDK: requests, paging and error mapping.

Both live sources read a space this way — :class:`~content.sources.ContentfulSource` (delivery, Sync
API) and :class:`~content.preview.PreviewSource` (Preview API, collection queries) — so a refused
token, a rate limit or a broken response reads the same, as one of :mod:`content.errors`, whichever
API was asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
from msgspec import Struct

from content.errors import ContentAccessError, ContentFormatError, ContentSourceError
from content.items import (
    ContentLocale,
    ContentTypeInfo,
    content_type_from_json,
    locale_from_json,
)

__all__ = ["ContentfulAPI", "SpaceConnection", "page_items", "content_types_by_id"]

_JSON = msgspec.json.Decoder()
_PAGE_LIMIT = 1000  # the CDA's maximum page size for collections


class SpaceConnection(Struct, frozen=True, kw_only=True):
    """Which space a live source reads and how the SDK client reaches it — what the delivery and the
    preview source are both configured with. The token is kept apart, so it never shows in a repr."""

    space_id: str
    environment: str = "master"
    api_url: str = "cdn.contentful.com"
    https: bool = True
    timeout_s: float = 5.0
    max_rate_limit_retries: int = 1
    max_rate_limit_wait: int = 60


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
        self, connection: SpaceConnection, access_token: str, *, token_kind: str = "Content Delivery API"
    ) -> None:
        self.connection = connection
        self.token_kind = token_kind
        self._access_token = access_token
        self._client: Any = None

    @property
    def where(self) -> str:
        c = self.connection
        return f"space {c.space_id!r} (environment {c.environment!r}) at {c.api_url}"

    def repr_as(self, name: str) -> str:
        """A source's repr: ``name(space_id=…, environment=…, api_url=…)``, never the token."""
        c = self.connection
        return f"{name}(space_id={c.space_id!r}, environment={c.environment!r}, api_url={c.api_url!r})"

    @property
    def client(self) -> Any:
        """The SDK client, created on first use (no I/O)."""
        if self._client is None:
            import contentful

            c = self.connection
            self._client = contentful.Client(
                c.space_id,
                self._access_token,
                api_url=c.api_url,
                environment=c.environment,
                https=c.https,
                timeout_s=c.timeout_s,
                raw_mode=True,
                content_type_cache=False,
                max_rate_limit_retries=c.max_rate_limit_retries,
                max_rate_limit_wait=c.max_rate_limit_wait,
                application_name="vary",
                application_version=_vary_version(),
            )
        return self._client

    def locales(self) -> tuple[ContentLocale, ...]:
        """The space's locales (``/locales``)."""
        return tuple(locale_from_json(item) for item in self.collection("locales", self.client.locales))

    def content_types(self) -> dict[str, ContentTypeInfo]:
        """The space's content types by id (``/content_types``)."""
        return content_types_by_id(self.collection("content types", self.client.content_types))

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
            batch = page_items(page)
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


def page_items(page: dict[str, Any]) -> list[Any]:
    """The ``items`` of a Contentful response page."""
    items = page.get("items") or []
    if not isinstance(items, list):
        raise ContentFormatError("a Contentful response has 'items' that are not a list")
    return items


def content_types_by_id(items: Iterable[Any]) -> dict[str, ContentTypeInfo]:
    """Content types (management or delivery format) by id."""
    parsed = (content_type_from_json(item) for item in items)
    return {content_type.id: content_type for content_type in parsed}


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
