"""A lean keep-alive HTTP/1.1 client for the load tests: asyncio streams, responses parsed by httptools.

Why not httpx here: a load test on a 2-core machine shares the cores with the server it measures, so
the load generator's own cost per request is part of every latency it records. httpx's asyncio pool
spent about 1 ms of CPU per request (its connection-pool bookkeeping is linear in the number of
connections), saturated a core at ~350 requests per second with 32 connections, and queued requests
inside the client for up to 1.5 s while the server answered each within 100 ms — the "p99 tail" the
paused-Redis test used to report was the client's. This client costs a few tens of microseconds per
request, one connection per worker, so what it measures is the server.

It also says exactly how a connection ended: :class:`ConnectionDropped` names the request, how many
response bytes had arrived and the connection's age, where httpx reported only ``ReadError``.
"""

from __future__ import annotations

import asyncio
import time

import httptools

__all__ = ["ConnectionDropped", "KeepAliveConnection", "Reply"]


class ConnectionDropped(ConnectionError):
    """The server closed the connection (or it broke) before a whole response arrived."""


class Reply:
    """One response: status, headers (lower-case names) and the whole body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Parsed:
    """httptools callbacks collecting one response."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class KeepAliveConnection:
    """One HTTP/1.1 connection to ``host:port``, opened on first use and again after the server
    closes it (``Connection: close``). Requests on one connection go one at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._opened = 0.0
        self._served = 0
        #: Connections opened so far (1 in a healthy run: keep-alive held throughout).
        self.connects = 0

    @classmethod
    def to(cls, base: str, headers: dict[str, str] | None = None) -> KeepAliveConnection:
        """A connection to ``http://host:port`` (the form ``VaryProcess.base`` has)."""
        host, _, port = base.removeprefix("http://").rstrip("/").partition(":")
        return cls(host, int(port or 80), headers)

    async def post(self, path: str, body: bytes, content_type: str = "application/json") -> Reply:
        """POST ``body``; raises :class:`ConnectionDropped` if the server closes before answering
        and :class:`TimeoutError` after ``timeout_s``."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self._opened = time.monotonic()
            self._served = 0
            self.connects += 1
        assert self._reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._fixed}"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        parsed = _Parsed()
        parser = httptools.HttpResponseParser(parsed)
        received = 0
        try:
            self._writer.write(head.encode("latin-1") + body)
            async with asyncio.timeout(self.timeout_s):
                while not parsed.complete:
                    data = await self._reader.read(65536)
                    if not data:
                        raise ConnectionDropped(
                            f"POST {path}: the server closed the connection after {received} response bytes "
                            f"(request {self._served + 1} on a connection {time.monotonic() - self._opened:.2f} s old)"
                        )
                    received += len(data)
                    parser.feed_data(data)
        except (ConnectionDropped, OSError, TimeoutError) as exc:
            self.close()
            if isinstance(exc, ConnectionDropped | TimeoutError):
                raise
            raise ConnectionDropped(f"POST {path}: {exc!r} after {received} response bytes") from exc
        self._served += 1
        if parsed.headers.get("connection", "").lower() == "close":  # HTTP/1.1: kept alive unless said
            self.close()
        return Reply(parser.get_status_code(), parsed.headers, b"".join(parsed.chunks))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
