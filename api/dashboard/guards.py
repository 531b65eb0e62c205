"""Who may see the dashboard, and which form posts it takes: HTTP-level checks before any page runs.

Authentication is the admin key, either as ``Authorization: Bearer`` (scripts, curl) or through the
sign-in form, which sets a signed session cookie (:mod:`api.dashboard.session`). A browser without
either is sent to the sign-in form (:class:`SignInRequired`); a delivery key is refused (403) as on
every admin route. Like :mod:`api.http.auth`, these checks are about the request, not the domain, so
they raise Litestar's HTTP exceptions directly (see :mod:`api.http.errors`).
"""

from __future__ import annotations

import time
from urllib.parse import urlparse

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from api.dashboard.session import COOKIE_NAME, session_is_live, token_is_valid
from api.http.auth import requires_admin

__all__ = [
    "SignInRequired",
    "check_origin",
    "requires_dashboard",
    "safe_next",
    "session_secret",
    "signed_session",
]


class SignInRequired(NotAuthorizedException):
    """No key and no valid session: a browser is sent to the sign-in form, anything else gets 401."""


def session_secret(connection: ASGIConnection) -> bytes:
    """The key that signs session cookies (from the configured secret or the key ring)."""
    app_state = connection.app.state
    return app_state.key_ring.session_secret(app_state.settings.session_secret)  # type: ignore[no-any-return]


def signed_session(connection: ASGIConnection) -> str | None:
    """The request's session token if it is validly signed and unexpired (not yet checked live)."""
    token = connection.cookies.get(COOKIE_NAME)
    return token if token and token_is_valid(session_secret(connection), token, time.time()) else None


async def _has_session(connection: ASGIConnection) -> bool:
    token = signed_session(connection)
    return token is not None and await session_is_live(connection.app.state.runtime.redis, token)


async def requires_dashboard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """An admin key in the header (checked and rate-limited as on ``/v1`` admin routes), or a valid
    session cookie from the sign-in form whose session is still live (not signed out)."""
    if connection.headers.get("authorization"):
        await requires_admin(connection, handler)
        return
    if await _has_session(connection):
        return
    raise SignInRequired(detail="sign in with an admin key (or send it as 'Authorization: Bearer <key>')")


def check_origin(request: Request) -> None:
    """A form POST from another site is refused even before the cookie's SameSite=Strict matters."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if urlparse(origin).netloc != request.headers.get("host", ""):
        raise PermissionDeniedException(detail=f"form posted from another origin ({origin}); refused")


def safe_next(target: str | None) -> str:
    """Only a dashboard path on this host (never ``//evil`` or a full URL) is a place to go back to."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"
