"""API keys: two scopes, held as hashes, compared in constant time.

* **delivery** keys may live in a web page or an app (like a Contentful delivery token): personalize,
  entries, events.
* **admin** keys read results, list experiences, preview drafts, manage models. An admin key also
  works on delivery routes; a delivery key on an admin route is a 403, a missing or unknown key a 401.

Keys travel in the ``Authorization: Bearer <key>`` header. Delivery routes also take a *delivery* key
as the ``key`` query parameter, because ``navigator.sendBeacon`` cannot set headers (the front-end kit
sends events and exposures as beacons); the header wins when both are sent. Admin keys are never
accepted in a URL, and admin routes ignore the parameter. Access-log lines mask it
(``personalization/privacy.py``).

Keys are given as ``VARY_DELIVERY_KEYS`` / ``VARY_ADMIN_KEYS`` (comma-separated, several per scope for
rotation), either raw or pre-hashed as ``sha256:<hex>`` so a deployment never needs the raw key.
Only SHA-256 digests are kept in memory; the presented key is hashed and compared with
``hmac.compare_digest`` against every active digest of the scope.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

__all__ = [
    "KeyRing",
    "Scope",
    "bearer_scope",
    "bearer_token",
    "digest",
    "key_scope",
    "ensure_keys",
    "requires_admin",
    "requires_delivery",
]

log = logging.getLogger("vary.auth")

Scope = Literal["delivery", "admin"]
SCOPE_KEY = "vary.key_scope"


def digest(key: str) -> bytes:
    """SHA-256 of a key (keys are long random strings, so a fast hash is the right one)."""
    return hashlib.sha256(key.encode()).digest()


def _parse(keys: Iterable[str]) -> tuple[bytes, ...]:
    out: list[bytes] = []
    for key in keys:
        if key.startswith("sha256:"):
            out.append(bytes.fromhex(key.removeprefix("sha256:")))
        else:
            out.append(digest(key))
    return tuple(out)


class KeyRing:
    """The active key digests of both scopes."""

    #: Most keys whose scope is remembered (only valid keys are; a deployment has a handful).
    _KNOWN_MAX = 1024

    def __init__(self, delivery: Iterable[str], admin: Iterable[str]) -> None:
        self._delivery = _parse(delivery)
        self._admin = _parse(admin)
        #: Valid keys already checked → their scope: one dictionary lookup per request instead of a
        #: SHA-256 and a constant-time pass over every digest (issue 22). Unknown keys are never
        #: remembered, so a client sending random keys cannot grow it.
        self._known: dict[str, Scope] = {}

    @staticmethod
    def _match(presented: bytes, digests: tuple[bytes, ...]) -> bool:
        found = False
        for candidate in digests:  # no early exit: time does not depend on which key matched
            found |= hmac.compare_digest(presented, candidate)
        return found

    def digests(self) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """The SHA-256 digests of the delivery and the admin keys (to derive secrets from)."""
        return self._delivery, self._admin

    def scope_of(self, key: str) -> Scope | None:
        known = self._known.get(key)
        if known is not None:
            return known
        presented = digest(key)
        scope: Scope | None = None
        if self._match(presented, self._admin):
            scope = "admin"
        elif self._match(presented, self._delivery):
            scope = "delivery"
        if scope is not None and len(self._known) < self._KNOWN_MAX:
            self._known[key] = scope
        return scope

    def session_secret(self, configured: str | None = None) -> bytes:
        """The key that signs dashboard session tokens (``api/dashboard/session.py``).

        ``VARY_SESSION_SECRET`` when set; otherwise derived from the admin key digests, so every
        worker of a deployment derives the same secret with nothing shared, and rotating the admin
        keys ends every dashboard session.
        """
        if configured:
            return hashlib.sha256(b"vary-session-secret\x00" + configured.encode()).digest()
        return hmac.new(b"vary-dashboard-session", b"".join(sorted(self._admin)), hashlib.sha256).digest()


def keys_file(data_dir: Path) -> Path:
    """Where generated keys are kept between starts."""
    return Path(data_dir) / "keys.json"


def ensure_keys(
    delivery: tuple[str, ...], admin: tuple[str, ...], data_dir: Path
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """Keys to run with. With none configured, generate a pair once, keep it in ``<data_dir>/keys.json``
    (mode 0600, for local development) and return it so the caller can print it.

    Only keys generated by *this* call are returned for printing: keys read back from ``keys.json``
    on a later start are not, so they do not reach every start's terminal and log (the caller says
    where they are kept instead, :func:`keys_file`)."""
    if delivery and admin:
        return delivery, admin, {}
    path = keys_file(data_dir)
    generated: dict[str, str] = {}
    if path.exists():
        try:
            generated = json.loads(path.read_text())
        except (OSError, ValueError):
            generated = {}
    fresh = not generated.get("delivery") or not generated.get("admin")
    if fresh:
        generated = {
            "delivery": "vd_" + secrets.token_urlsafe(24),
            "admin": "va_" + secrets.token_urlsafe(24),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(generated, handle)
    shown = {}
    if not delivery:
        delivery = (generated["delivery"],)
        shown["delivery"] = generated["delivery"]
    if not admin:
        admin = (generated["admin"],)
        shown["admin"] = generated["admin"]
    return delivery, admin, shown if fresh else {}


def bearer_token(header: str | None) -> str | None:
    """The key in an ``Authorization: Bearer <key>`` header value, or ``None``."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _bearer(connection: ASGIConnection) -> str | None:
    return bearer_token(connection.headers.get("authorization"))


def _query_key(connection: ASGIConnection) -> str | None:
    """A delivery key sent as ``?key=`` (beacons cannot set headers)."""
    key = connection.query_params.get("key")
    if not isinstance(key, str) or not key.strip():
        return None
    return key.strip()


def _presented_key(connection: ASGIConnection, allow_query: bool) -> tuple[str | None, bool]:
    """The key of the request and whether it came from the query string (the header wins)."""
    token = _bearer(connection)
    if token is None and allow_query:
        query = _query_key(connection)
        return query, query is not None
    return token, False


def _scope(connection: ASGIConnection, allow_query: bool = False) -> Scope:
    token, from_query = _presented_key(connection, allow_query)
    if token is None:
        raise NotAuthorizedException(
            detail="missing API key: send it as the header 'Authorization: Bearer <key>'"
        )
    scope = connection.app.state.key_ring.scope_of(token)
    if scope is None:
        raise NotAuthorizedException(detail="unknown API key")
    if from_query and scope != "delivery":
        raise NotAuthorizedException(
            detail="the 'key' query parameter takes delivery keys only; send an admin key in the "
            "'Authorization: Bearer <key>' header"
        )
    connection.scope[SCOPE_KEY] = scope  # type: ignore[literal-required]
    return scope


def bearer_scope(connection: ASGIConnection) -> Scope | None:
    """The scope of the ``Authorization: Bearer`` key, or ``None`` (no key, unknown key): for
    unauthenticated routes that show more to an admin (``/ready``) without refusing anyone."""
    token = _bearer(connection)
    return None if token is None else connection.app.state.key_ring.scope_of(token)


def key_scope(connection: ASGIConnection) -> Scope | None:
    """The scope of the key a guarded request was authorized with."""
    return connection.scope.get(SCOPE_KEY)  # type: ignore[return-value]


async def _rate_limit(connection: ASGIConnection, route: Scope) -> None:
    """Count the request against its key's limit for this route class (see ``api.http.ratelimit``)."""
    limiter = connection.app.state.get("rate_limiter")
    token, _ = _presented_key(connection, allow_query=route == "delivery")
    if limiter is not None and token is not None:
        await limiter.hit(token, route)


async def requires_delivery(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard for front-end routes: any valid key (a delivery key also as ``?key=``), within the
    delivery rate limit."""
    _scope(connection, allow_query=True)
    await _rate_limit(connection, "delivery")


async def requires_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard for admin routes: an admin key (a delivery key is refused with 403), within the admin
    rate limit."""
    if _scope(connection) != "admin":
        raise PermissionDeniedException(detail="this route needs an admin key; a delivery key was sent")
    await _rate_limit(connection, "admin")
