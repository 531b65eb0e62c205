"""Vary's route decorators: Litestar's ``get``/``post``/``put``/``delete``, minus a per-request copy.

Litestar hands every guard a *copy* of the route handler (``copy(self)``), so that a guard may
change it without touching the shared one. Vary's guards (:mod:`api.http.auth`, the dashboard's) never
change the handler, and copying one with Litestar's ~50 attributes cost 16 µs per request — about
2 % of a worker's CPU on ``POST /v1/personalize``. :class:`GuardedRoute` runs the same guards, in
the same order, with the handler itself. Use these decorators for every route (a test checks that
each guarded route does); a guard that needs to modify its handler must not be added to them.

They build :class:`~litestar.handlers.HTTPRouteHandler` (Litestar's ``route``) with the method
set, which is all Litestar's semantic decorators do; subclassing those is deprecated in Litestar 2.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler

__all__ = ["GuardedRoute", "delete", "get", "post", "put"]


class GuardedRoute(HTTPRouteHandler):
    """A route handler whose guards get the handler itself instead of a copy of it."""

    async def authorize_connection(self, connection: ASGIConnection) -> None:
        for guard in self.resolve_guards():
            await guard(connection, self)


def get(path: str | list[str] | None = None, **kwargs: Any) -> GuardedRoute:
    """Like ``litestar.get``."""
    return GuardedRoute(path, http_method=HttpMethod.GET, **kwargs)


def post(path: str | list[str] | None = None, **kwargs: Any) -> GuardedRoute:
    """Like ``litestar.post`` (201 unless ``status_code`` says otherwise)."""
    return GuardedRoute(path, http_method=HttpMethod.POST, **kwargs)


def put(path: str | list[str] | None = None, **kwargs: Any) -> GuardedRoute:
    """Like ``litestar.put``."""
    return GuardedRoute(path, http_method=HttpMethod.PUT, **kwargs)


def delete(path: str | list[str] | None = None, **kwargs: Any) -> GuardedRoute:
    """Like ``litestar.delete`` (204 unless ``status_code`` says otherwise)."""
    return GuardedRoute(path, http_method=HttpMethod.DELETE, **kwargs)
