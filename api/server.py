"""The HTTP/1.1 server layer of ``vary serve``: uvicorn's httptools protocol with read deadlines.

Why: uvicorn bounds how long an *idle* keep-alive connection stays open, but not how long a client
may take to *send* a request. A client trickling its headers or its body one byte every few seconds
(slowloris, slow POST) held its connection — and, once its headers were in, an application task
waiting in ``receive()`` — for as long as it liked; a few hundred of them per worker, and the
public delivery key is not even needed (``/v1/webhooks/contentful`` reads its body before any
signature check can fail). uvicorn has no header or body read timeout, so this module adds both in
its protocol layer, and :func:`uvicorn_options` adds its per-worker ``limit_concurrency``:

* **header deadline** (``VARY_HEADER_TIMEOUT_S``): from a new connection's start, or from the first
  byte of a request on a kept-alive one, until the end of that request's headers;
* **body deadline** (``VARY_BODY_TIMEOUT_S``): from the end of the headers until the end of the
  body. Both are totals, not idle timeouts, so a steady trickle cannot extend them.

When one passes, a request that had begun is answered ``408 Request Timeout`` (``Connection:
close``) and the connection is closed; a new connection that never sent a byte is closed silently, as
uvicorn closes an expired keep-alive one. If the application was already waiting for the body, it
sees ``http.disconnect`` and whatever it answers goes nowhere. A deadline that passes while *Vary*
is the one not reading (uvicorn paused reading: a pipelined request waiting behind the one before
it, or a large body the application has not consumed yet) starts again instead: that wait is not the
client's.

Cost: a deadline timer is armed only when a request is still incomplete after the bytes at hand were
parsed. A request that arrives whole (nearly every one) arms none, beyond the one timer of a new
connection. Measured with ``bench.run --quick --only http`` (2 workers, 64 connections, three
alternating pairs of runs): server CPU per request 0.348 ms with it, 0.355 ms without, within noise.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from asyncio import TimerHandle
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
from uvicorn.server import ServerState

from api.http.direct import DirectRoute, direct_route, response_head
from api.http.hot_path import HANDED_OVER, HotPath, replay, request_headers
from api.http.hot_path import PATHS as _DIRECT_PATHS
from api.settings import Settings

__all__ = ["DeadlineHttpToolsProtocol", "uvicorn_options"]

log = logging.getLogger("vary.server")


class _Phase(enum.Enum):
    """Where the connection is in reading a request, i.e. which deadline applies."""

    #: A new connection that has not sent a byte yet (header deadline; closed silently).
    CONNECTED = "connected"
    #: A request has begun and its headers are not complete (header deadline; 408).
    HEADERS = "headers"
    #: Headers complete, body not (body deadline; 408 unless a response has started).
    BODY = "body"
    #: Between requests: uvicorn's keep-alive timeout applies, no deadline of ours.
    IDLE = "idle"


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header and a body read deadline (see the module docstring).

    uvicorn builds one per connection with ``config``, ``server_state``, ``app_state`` (and ``_loop``);
    the two deadlines are bound beforehand with :func:`functools.partial` (:func:`uvicorn_options`),
    which pickles into spawned worker processes along with uvicorn's ``Config``.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout_s: float,
        body_timeout_s: float,
        direct: bool = False,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        #: Answer the lean routes (personalize, events) beneath ASGI when the app allows it (api/http/direct.py).
        self.direct = direct
        self._phase = _Phase.IDLE
        self._deadline: TimerHandle | None = None

    # -- deadline bookkeeping ----------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._deadline_passed)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timeout_of(self, phase: _Phase) -> float:
        return self.body_timeout_s if phase is _Phase.BODY else self.header_timeout_s

    # -- protocol and parser callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase = _Phase.CONNECTED
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._phase = _Phase.IDLE
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Armed only now, after parsing: a request that arrived whole needs no timer at all. A new
        # connection's timer keeps running through its first request's headers (counted from connect).
        phase = self._phase
        if self._deadline is None and phase in (_Phase.HEADERS, _Phase.BODY) and not self.transport.is_closing():
            self._arm(self._timeout_of(phase))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _Phase.HEADERS

    def on_headers_complete(self) -> None:
        self._disarm()
        self._phase = _Phase.BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._phase = _Phase.IDLE
        super().on_message_complete()

    # -- the direct path (api/http/direct.py) ------------------------------------------------------

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        """uvicorn starts each request's task here (at once, or when a pipelined one's turn comes);
        ``POST`` to one of the lean routes of the app itself gets the direct path's task instead."""
        scope = cycle.scope
        if self.direct and app is self.app and scope["path"] in _DIRECT_PATHS and scope["method"] == "POST":
            route = direct_route(app)
            if route is not None:
                task = self.loop.create_task(self._serve_direct(cycle, route))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
        super()._start_asgi_task(cycle, app)

    async def _serve_direct(self, cycle: RequestResponseCycle, route: DirectRoute) -> None:
        """Answer one request as the ASGI stack would (api/http/direct.py); like uvicorn's
        ``run_asgi``, an unexpected error is logged and answered 500 (or the connection closed)."""
        started = time.perf_counter()
        try:
            status = await self._answer_direct(cycle, route)
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not cycle.response_started:
                await cycle.send_500_response()
            else:
                self.transport.close()
            status = 500
        finally:
            cycle.on_response = _nothing
        if status is not None:
            route.observe(cycle.scope["path"], status, started, time.perf_counter())

    async def _answer_direct(self, cycle: RequestResponseCycle, route: DirectRoute) -> int | None:
        """The status answered, or ``None`` when the ASGI stack answered (it records its own)."""
        hot = route.hot
        scope = cycle.scope
        authorization, length, content_type, origin = request_headers(scope)
        if (origin and route.cors) or not hot.declared_fit(authorization, length):
            return await self._hand_over(cycle, hot)
        # The body, read as uvicorn's receive() reads it for an application.
        while True:
            if len(cycle.body) > hot.max_body:
                return await self._hand_over(cycle, hot)  # the app reads the rest and answers 413
            if not cycle.more_body or cycle.disconnected:
                break
            if cycle.waiting_for_100_continue and not self.transport.is_closing():
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                cycle.waiting_for_100_continue = False
            self.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.disconnected:
            return None  # the client left: nobody to answer, nothing done
        body = bytes(cycle.body)
        scope["app"] = scope["litestar_app"] = route.litestar  # as Litestar.__call__ sets them
        again = replay([{"type": "http.request", "body": body, "more_body": False}], cycle.receive)
        answer = await hot.respond(scope, body, authorization, content_type, again)  # type: ignore[arg-type]
        if answer is None:
            return await self._hand_over(cycle, hot)
        if type(answer) is not tuple:  # an error (or a Response), rendered by Litestar
            status = 500

            async def sending(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await cycle.send(message)

            await answer(scope, again, sending)  # type: ignore[operator]
            return status
        status, payload = answer
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()
        if cycle.disconnected:
            return status  # answered; the client left before it could be written (as uvicorn's send)
        cycle.response_started = cycle.response_complete = True
        cycle.waiting_for_100_continue = False
        if self.access_log:  # uvicorn's own access line, as its send() writes it (vary serve: off)
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d', get_client_addr(scope), "POST",
                get_path_with_query_string(scope), scope["http_version"], status,
            )
        head = response_head(self.server_state.default_headers, status, len(payload), cycle.keep_alive)
        self.transport.write(head + payload)
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()
        return status

    async def _hand_over(self, cycle: RequestResponseCycle, hot: HotPath) -> None:
        """The request through the whole ASGI stack, its body as read so far given to it first; the
        lean path passes it on to Litestar (``HANDED_OVER``) and counts it as handed over."""
        hot.handed_over += 1
        cycle.scope[HANDED_OVER] = True  # type: ignore[literal-required]
        cycle.message_event.set()  # what is in cycle.body is handed out by its first receive()
        await cycle.run_asgi(self.app)

    # -- the deadline passing ----------------------------------------------------------------------

    def _deadline_passed(self) -> None:
        self._deadline = None
        transport = self.transport
        if transport is None or transport.is_closing() or transport.get_protocol() is not self:
            return  # closed meanwhile, or upgraded to another protocol
        phase = self._phase
        if phase is _Phase.IDLE:
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm(self._timeout_of(phase))  # Vary is not reading: the wait is not the client's
            return
        if phase is _Phase.CONNECTED:
            transport.close()
            return
        timeout = self._timeout_of(phase)
        log.warning(
            "closed a connection whose request %s took longer than %g s (408)",
            "headers" if phase is _Phase.HEADERS else "body", timeout,
        )
        cycle = self.cycle if phase is _Phase.BODY else None
        if cycle is not None:
            # The application may be waiting in receive(): it now sees http.disconnect, and its answer
            # (if any) is dropped rather than written after ours.
            answered = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
            if answered:  # a response already went out: no second one on this connection
                transport.close()
                return
        self._send_408(
            f"Request Timeout: the request {'headers' if phase is _Phase.HEADERS else 'body'} "
            f"did not arrive within {timeout:g} s\n"
        )

    def _send_408(self, message: str) -> None:
        body = message.encode("ascii")
        content = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ])
        self.transport.write(b"".join(content))
        self.transport.close()


def _nothing() -> None:
    """A finished cycle's ``on_response``: late calls do nothing (as uvicorn's ``run_asgi`` leaves it)."""


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that bound slow and numerous clients per worker: the
    deadline protocol and ``limit_concurrency`` (uvicorn answers 503 when a worker holds
    ``VARY_MAX_CONNECTIONS`` connections or running requests; 0: no limit)."""
    protocol = functools.partial(
        DeadlineHttpToolsProtocol,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        direct=settings.direct_path and settings.hot_path,
    )
    return {
        "http": protocol,
        "limit_concurrency": settings.max_connections or None,
    }
