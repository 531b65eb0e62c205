"""``GET /metrics`` (admin key): Prometheus text format, and the request-latency histogram behind it.

The route needs an admin key (``Authorization: Bearer``; a Prometheus ``scrape_config`` sets it with
``authorization: {credentials: ...}``): the series name the experiences and variants content
defines, which a delivery key (public, in web pages) should not list. The series and how every
worker's values are summed are in :mod:`api.metrics`; docs/operations.md lists them.

:class:`RequestTimer` wraps the whole ASGI app, so a request's time includes the guards, rate
limiting and error handlers; its ``route`` label is the matched route *template*
(``/v1/entries/{entry_id:str}``), or ``unmatched`` — never the raw path, which a client chooses.
Its cost per request is one clock read at each end and a list append: durations are observed into
the histogram in bulk (:meth:`RequestTimer.flush`, with the other per-worker counts every
``SYNC_INTERVAL_S`` and before every scrape this worker answers). Under ``vary serve`` the
histogram lives in shared memory (Prometheus' multiprocess mode), where one observation takes a lock,
checks the process id and writes two memory-mapped values: 4-5 % of a worker's event-loop CPU per
personalize request (issue 22, py-spy); in bulk, one update per bucket touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from bisect import bisect_left
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.http.auth import requires_admin
from api.http.common import runtime_of
from api.http.handlers import get
from api.metrics import (
    REQUEST_SECONDS,
    SYNC_INTERVAL_S,
    RuntimeExporter,
    StateCollector,
    aggregator_backlog,
    exposition,
    worker_exited,
)

__all__ = ["RequestTimer", "install_metrics", "metrics"]

#: Prometheus's text exposition format, version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@get(
    "/metrics",
    guards=[requires_admin],
    tags=["operations"],
    summary="Prometheus metrics (admin key)",
    operation_id="metrics",
    media_type=CONTENT_TYPE,
)
async def metrics(state: State) -> Response[bytes]:
    """Every worker's series in the Prometheus text format (docs/operations.md lists them)."""
    runtime = runtime_of(state)
    exporter: RuntimeExporter | None = getattr(state, "metrics_exporter", None)
    timer: RequestTimer | None = getattr(state, "request_timer", None)
    if timer is not None:
        timer.flush()
    if exporter is not None:
        exporter.sync()  # this worker's counts are current; the others' at most SYNC_INTERVAL_S old
    try:  # with Redis down the scrape still answers, without the backlog
        backlog = await asyncio.wait_for(aggregator_backlog(runtime.redis, runtime.settings.stream_partitions), 1.0)
    except TimeoutError:
        backlog = {}
    return Response(exposition(StateCollector(runtime, backlog)), media_type=CONTENT_TYPE)


class RequestTimer:
    """ASGI middleware observing each HTTP request's duration by method, route template and status."""

    #: Durations held per series before they are observed anyway (a stalled sync loop stays bounded).
    MAX_PENDING = 10_000

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, str], Any] = {}
        #: Durations not yet in the histogram, by (method, route, status).
        self._pending: dict[tuple[str, str, str], list[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # the server answers 500 when the app raised before starting a response

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.record(scope["method"], scope.get("path_template"), status, time.perf_counter() - started)

    def record(self, method: str, path_template: str | None, status: int, seconds: float) -> None:
        """One request's duration, held for :meth:`flush` (also called by the server's direct path,
        :mod:`api.server`, for the requests it answers without the ASGI stack)."""
        key = (method if method in _METHODS else "OTHER", path_template or "unmatched", str(status))
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = []
        pending.append(seconds)
        if len(pending) >= self.MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Observe every duration held since the last flush: per series, the sum once and each bucket
        touched once, with its count — what one ``observe`` per duration would have added."""
        pending, self._pending = self._pending, {}
        for key, durations in pending.items():
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = REQUEST_SECONDS.labels(*key)
            _observe_all(child, durations)


def _observe_all(child: Any, durations: list[float]) -> None:
    """``child.observe(d)`` for every ``d``, in one update per bucket touched.

    Uses the histogram child's ``_sum``, ``_buckets`` and ``_upper_bounds`` (prometheus-client's own
    ``observe`` is three lines over them; tests/api/http/test_metrics_route.py compares the two
    expositions); a client without them gets one ``observe`` per duration."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for duration in durations:
            child.observe(duration)
        return
    counts: dict[int, int] = {}
    for duration in durations:
        index = bisect_left(bounds, duration)  # the first bound >= duration, as observe's loop finds
        counts[index] = counts.get(index, 0) + 1
    total.inc(sum(durations))
    for index, count in counts.items():
        buckets[index].inc(count)


def install_metrics(app: Litestar) -> None:
    """Add ``GET /metrics``, the request timer and the per-worker counter copy to ``app``."""
    app.register(metrics)
    app.asgi_handler = app.state.request_timer = RequestTimer(app.asgi_handler)

    async def start(app: Litestar) -> None:
        # the app's lifespan (api/app.py) made the loop-lag monitor before these hooks run
        loop_lag = getattr(app.state, "loop_lag", None)
        exporter = app.state.metrics_exporter = RuntimeExporter(runtime_of(app.state), loop_lag)

        async def copy_counts() -> None:
            while True:
                await asyncio.sleep(SYNC_INTERVAL_S)
                app.state.request_timer.flush()
                exporter.sync()

        app.state.metrics_task = asyncio.create_task(copy_counts(), name="vary-metrics")

    async def stop(app: Litestar) -> None:
        task: asyncio.Task[None] | None = getattr(app.state, "metrics_task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            app.state.request_timer.flush()
            app.state.metrics_exporter.sync(gauges=False)  # this worker's last counts (its spools are closed)
        worker_exited()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
