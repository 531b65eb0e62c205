"""The access log of ``vary serve``: one ``vary.access`` line per HTTP request, on by default.

Why not uvicorn's: it logs the request target as sent — query string and all — so every line needs
masking (``personalization/privacy.py`` does that for ``--access-log`` under a bare uvicorn), and it has
no duration. This one logs what an operator needs and nothing a visitor sent: the method, the route
*template* Litestar matched (``/v1/visitors/{visitor_id:str}``, never the id; ``-`` when no route
matched, never the raw path), the status and the duration in milliseconds, as structured fields
(``method``, ``path``, ``status``, ``duration_ms``) of the one log format (``api/logging_config.py``).
``VARY_ACCESS_LOG=false`` turns it off.
"""

from __future__ import annotations

import logging
import time

from litestar import Litestar
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog", "install_access_log", "log_request"]

log = logging.getLogger("vary.access")


def install_access_log(app: Litestar) -> None:
    """Wrap the app's request handler (its routing, exception handling and CORS; not the lifespan) in
    :class:`AccessLog`. The app stays the same object, so whoever holds it is unaffected."""
    app.asgi_handler = AccessLog(app.asgi_handler)


class AccessLog:
    """ASGI middleware around Litestar's request handler. It reads ``path_template`` from the scope
    after the handler ran: Litestar's router writes it into the same scope dict when a route matches."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        except BaseException:
            status = status or 500
            raise
        finally:
            log_request(scope.get("method", "-"), scope.get("path_template"), status, started)  # type: ignore[arg-type]


def log_request(method: str, path_template: str | None, status: int, started: float) -> None:
    """The access-log line of one request that began at ``started`` (``time.perf_counter()``); also
    written by the server's direct path (:mod:`api.server`) for the requests it answers itself."""
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    path = path_template or "-"
    log.info(
        "%s %s %d %.2fms", method, path, status, duration_ms,
        extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms},
    )
