"""Contentful's management format (a space export) turned into its delivery format (what the CDA and the
Preview API send), for :class:`~tests.content.contentful_server.FakeContentful`.

Written from Contentful's documentation, independently of Vary's own parsing (``content/items.py``),
so a test comparing the two paths is not comparing Vary's code with itself.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Collection, Iterator, Mapping
from typing import Any

__all__ = [
    "ERRORS",
    "page_of",
    "delivery_content_type",
    "delivery_item",
    "delivery_locale",
    "error_response",
    "fallback_chain",
    "link",
    "link_target",
    "links_in",
    "space_id_of",
]

#: Contentful's error ids and messages by HTTP status.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The query you sent was invalid."),
    401: ("AccessTokenInvalid", "The access token you sent could not be found or is invalid."),
    403: ("AccessDenied", "The specified token does not have access to the requested resource."),
    404: ("NotFound", "The resource could not be found."),
    429: ("RateLimitExceeded", "You have exceeded the rate limit of the Organization this Space "
          "belongs to by making too many API requests within a short timespan. Please wait a "
          "moment before trying the request again."),
    500: ("ServerError", "Internal server error."),
    502: ("BadGateway", "The requested space is hibernated."),
    503: ("ServiceUnavailable", "The service is unavailable."),
}


def delivery_item(
    item: Mapping[str, Any],
    space_id: str,
    environment: str,
    *,
    locale: str | None,
    locales: list[Mapping[str, Any]],
    non_localized: Collection[str] = (),
    omitted: Collection[str] = (),
    draft: bool = False,
) -> dict[str, Any]:
    """An exported (management-format) entry or asset as the CDA delivers it.

    ``locale="*"`` keeps fields keyed by locale (as sync does); one locale code (or ``None`` for the
    default) flattens them with Contentful's fallback rules, reading ``non_localized`` fields from the
    default locale. ``omitted`` fields (hidden from API responses) are left out. ``draft`` delivers
    it as the Preview API does: timestamps of the latest version, not of the published one.
    """
    sys = item["sys"]
    default = next((loc["code"] for loc in locales if loc.get("default")), "en-US")
    delivered_sys: dict[str, Any] = {
        "space": link("Space", space_id),
        "id": sys["id"],
        "type": sys["type"],
        "createdAt": sys["createdAt"] if draft else sys.get("firstPublishedAt") or sys["createdAt"],
        "updatedAt": sys["updatedAt"] if draft else sys.get("publishedAt") or sys["updatedAt"],
        "environment": link("Environment", environment),
        "revision": sys.get("publishedCounter", 0 if draft else 1),
    }
    if sys["type"] == "Entry":
        delivered_sys["contentType"] = link("ContentType", link_target(sys["contentType"]))
    fields = {
        name: dict(values) for name, values in item.get("fields", {}).items() if name not in omitted
    }
    if locale != "*":
        code = locale or default
        delivered_sys["locale"] = code
        chain = fallback_chain(code, locales)
        flat: dict[str, Any] = {}
        for name, values in fields.items():
            for candidate in [default] if name in non_localized else chain:
                if candidate in values:
                    flat[name] = values[candidate]
                    break
        fields = flat
    return {"metadata": copy.deepcopy(item.get("metadata", {"tags": []})), "sys": delivered_sys, "fields": fields}


def fallback_chain(code: str, locales: list[Mapping[str, Any]]) -> list[str]:
    fallback = {loc["code"]: loc.get("fallbackCode") for loc in locales}
    chain: list[str] = []
    current: str | None = code
    while current and current not in chain:
        chain.append(current)
        current = fallback.get(current)
    return chain


def delivery_content_type(ct: Mapping[str, Any], space_id: str, environment: str) -> dict[str, Any]:
    sys = ct["sys"]
    return {
        "sys": {
            "space": link("Space", space_id), "id": sys["id"], "type": "ContentType",
            "createdAt": sys.get("firstPublishedAt") or sys["createdAt"],
            "updatedAt": sys.get("publishedAt") or sys["updatedAt"],
            "environment": link("Environment", environment), "revision": sys.get("publishedCounter", 1),
        },
        "displayField": ct.get("displayField"),
        "name": ct["name"],
        "description": ct.get("description", ""),
        "fields": copy.deepcopy(ct["fields"]),
    }


def delivery_locale(locale: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "code": locale["code"], "name": locale["name"], "default": locale.get("default", False),
        "fallbackCode": locale.get("fallbackCode"),
        "sys": {"id": locale["sys"]["id"], "type": "Locale", "version": locale["sys"].get("version", 1)},
    }


def page_of(items: list[Any], query: Mapping[str, str]) -> dict[str, Any]:
    limit = min(int(query.get("limit", 100)), 1000)
    skip = int(query.get("skip", 0))
    return {"sys": {"type": "Array"}, "total": len(items), "skip": skip, "limit": limit,
            "items": items[skip : skip + limit]}


def links_in(fields: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(linkType, id) of every link in an exported entry's fields (all locales), in order."""
    for values in fields.values():
        for value in values.values():
            for candidate in value if isinstance(value, list) else [value]:
                if isinstance(candidate, dict) and candidate.get("sys", {}).get("type") == "Link":
                    yield candidate["sys"]["linkType"], candidate["sys"]["id"]


def error_response(status: int, details: Any = None) -> tuple[int, dict[str, Any]]:
    error_id, message = ERRORS.get(status, ("Error", "Something went wrong."))
    body: dict[str, Any] = {"sys": {"type": "Error", "id": error_id}, "message": message,
                            "requestId": secrets.token_hex(8)}
    if details is not None:
        body["details"] = details
    return status, body


def link(link_type: str, target: str) -> dict[str, Any]:
    return {"sys": {"type": "Link", "linkType": link_type, "id": target}}


def link_target(link: Any) -> str:
    return link["sys"]["id"]


def space_id_of(export: Mapping[str, Any]) -> str:
    for key in ("entries", "assets", "contentTypes"):
        for item in export.get(key, []):
            space = item.get("sys", {}).get("space")
            if space:
                return space["sys"]["id"]
    return "varydemo0001"
