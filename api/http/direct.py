"""The direct path: ``POST /v1/personalize`` and ``/v1/events`` answered by the server's protocol, beneath ASGI.

Why (issue 22): the lean path (:mod:`api.http.hot_path`) took Litestar's per-request layers out of the
route, but every request still went through the ASGI machinery around it: uvicorn's proxy-headers
middleware, ``Litestar.__call__``, the access log and request timer wrappers, the lean path's own
``receive`` loop, and uvicorn's ``send``, which checks and encodes each message. Measured with wrk on
one uvicorn worker, that machinery alone costs 0.033 ms of CPU per request (a bare ASGI app answering
a canned body) against 0.013 ms for the same answer written by the protocol: a tenth of what a
personalize request costs a worker.

So ``vary serve``'s protocol (:class:`api.server.DeadlineHttpToolsProtocol`) answers the routes itself
when it can do exactly what the ASGI stack would have done, and hands everything else to that stack:

* **Only a stack it can reproduce.** :func:`direct_route` walks the app once per worker: uvicorn's
  proxy-headers middleware (the route reads no client address), Litestar without ``before_send``
  hooks, then only the access log, the request timer and CORS (passed through: see below) down to the
  lean path. Any other layer — tracing's server spans, a plugin's middleware, uvicorn's message
  logger — and there is no direct path at all.
* **Same answer.** The body is read as uvicorn's ``receive`` reads it (``100 Continue`` included),
  then :meth:`api.http.hot_path.HotPath.respond` decides exactly as the lean path does; a request it
  would hand to Litestar (no key, a refused body, over the size limit, a CORS ``Origin``) goes through
  the whole ASGI stack, marked so the lean path passes it on. An error is rendered by the app's
  exception handlers and written through uvicorn's ``send``.
* **Same bookkeeping.** The request timer and the access log record the request as their wrappers
  would (:meth:`api.http.metrics.RequestTimer.record`, :func:`api.logging_access.log_request`); the
  task is uvicorn's (counted by ``limit_concurrency``, awaited by a graceful shutdown); pipelined
  requests wait their turn as uvicorn queues them.

``VARY_DIRECT_PATH=false`` turns it off (the lean path stays: ``VARY_HOT_PATH``).
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Litestar
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from api.http.cors import DeliveryCORSMiddleware
from api.http.hot_path import HotPath
from api.http.metrics import RequestTimer
from api.logging_access import AccessLog, log_request
from api.logging_access import log as access_log

__all__ = ["DirectRoute", "direct_route", "response_head"]


class DirectRoute:
    """What the protocol needs to answer the routes: the lean path and the layers it reproduces."""

    def __init__(self, litestar: Litestar, hot: HotPath, timer: RequestTimer | None, access: bool, cors: bool) -> None:
        self.litestar = litestar
        self.hot = hot
        #: The request timer to record into, when the stack has one.
        self.timer = timer
        #: Whether the stack writes the access log (then also whether its logger is on, per request).
        self.access = access
        #: Whether CORS is in the stack: then a request with an ``Origin`` header goes through it.
        self.cors = cors
        #: Requests answered here, whatever their status (tests read it).
        self.answered = 0

    def observe(self, path: str, status: int, started: float, ended: float) -> None:
        """Record one answered request as the request timer and the access log would have."""
        self.answered += 1
        if self.timer is not None:
            self.timer.record("POST", path, status, ended - started)
        if self.access and access_log.isEnabledFor(logging.INFO):
            log_request("POST", path, status, started)


#: Routes found, by ``id`` of the app (with the app, so that a reused id is told apart). A worker has
#: one app; only tests make more, hence the small bound.
_ROUTES: dict[int, tuple[Any, DirectRoute | None]] = {}


def direct_route(app: Any) -> DirectRoute | None:
    """``app``'s direct route (uvicorn's loaded app), or ``None`` when a layer between the server and
    the lean path is one the direct path does not reproduce (module docstring). Found once per app."""
    found = _ROUTES.get(id(app))
    if found is not None and found[0] is app:
        return found[1]
    if len(_ROUTES) >= 16:
        _ROUTES.clear()
    route = _find_route(app)
    _ROUTES[id(app)] = (app, route)
    return route


def _find_route(app: Any) -> DirectRoute | None:
    layer = app
    while isinstance(layer, ProxyHeadersMiddleware):
        layer = layer.app
    if not isinstance(layer, Litestar) or layer.before_send:
        return None
    hot = getattr(layer.state, "hot_path", None)
    if not isinstance(hot, HotPath):
        return None
    timer: RequestTimer | None = None
    access = cors = False
    handler: Any = layer.asgi_handler
    while handler is not hot:
        if type(handler) is AccessLog:
            access = True
        elif type(handler) is RequestTimer:
            timer = handler
        elif type(handler) is DeliveryCORSMiddleware:
            cors = True
        else:
            return None
        handler = handler.app
    return DirectRoute(layer, hot, timer, access, cors)


_HEADS: dict[tuple[int, bool], tuple[list[tuple[bytes, bytes]], bytes]] = {}


def response_head(default_headers: list[tuple[bytes, bytes]], status: int, length: int, keep_alive: bool) -> bytes:
    """The status line and headers of a JSON answer, with the server's default headers (``date``,
    ``server``: uvicorn replaces that list every second, so its bytes are joined once per list)."""
    cached = _HEADS.get((status, keep_alive))
    if cached is None or cached[0] is not default_headers:
        fixed = b"".join(name + b": " + value + b"\r\n" for name, value in default_headers)
        cached = _HEADS[(status, keep_alive)] = (
            default_headers,
            STATUS_LINE[status] + fixed + b"content-type: application/json\r\ncontent-length: ",
        )
    return b"%b%d\r\n%b\r\n" % (cached[1], length, b"" if keep_alive else b"connection: close\r\n")
