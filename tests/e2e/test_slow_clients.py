"""Issue 17, item 8: slow clients cannot hold connections open (``api/server.py``).

Before, a client trickling its request headers or body a byte at a time kept its connection open
indefinitely under ``vary serve`` (uvicorn has no read timeout of its own), also on the
unauthenticated Contentful webhook. Now the real ``vary serve`` process, with short deadlines set
through its settings, answers 408 and closes such connections within the deadline plus slack, keeps
serving everyone else meanwhile, leaves kept-alive connections between requests alone, and answers
503 above ``VARY_MAX_CONNECTIONS``. Raw sockets, because an HTTP client library sends whole requests.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from api.embedded.valkey import EmbeddedRedis
from tests.e2e.servers import VaryProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DELIVERY = "slow-delivery"
ADMIN = "slow-admin"
HEADER_TIMEOUT_S = 1.5
BODY_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 40
#: Scheduling slack on a shared 2-core machine: a deadline must act within its time plus this.
SLACK_S = 2.0
#: How long a trickle goes on before the test gives up: an uncut connection fails the test here.
GIVE_UP_S = 12.0
#: A byte this often: the client is never idle long, it is just slow.
TRICKLE_EVERY_S = 0.25

PERSONALIZE_BODY = b'{"visitor": {"id": "slow-visitor"}, "entries": ["bannerNewsletter"]}'


@pytest.fixture(scope="module")
def server(valkey: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaryProcess]:
    env = {
        "VARY_REDIS_URL": valkey.url,
        "VARY_DELIVERY_KEYS": DELIVERY,
        "VARY_ADMIN_KEYS": ADMIN,
        "VARY_WORKERS": "1",
        "VARY_TRAIN_DEMO_MODEL": "false",
        "VARY_AGGREGATE": "false",
        "VARY_SINKS_IN_PROCESS": "false",
        "VARY_CONTENT_POLL_S": "0",
        "VARY_CONTENTFUL_WEBHOOK_SECRET": "w" * 64,
        "VARY_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "VARY_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "VARY_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    process = VaryProcess(env, tmp_path_factory.mktemp("slow-clients"))
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def _connect(server: VaryProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _trickle(sock: socket.socket, data: bytes, give_up_s: float = GIVE_UP_S) -> tuple[bytes, float]:
    """Send ``data`` one byte every :data:`TRICKLE_EVERY_S` (cycling through it) until the server
    answers or closes, or ``give_up_s`` passes. Returns what the server sent and the seconds taken."""
    started = time.monotonic()
    received = b""
    position = 0
    while time.monotonic() - started < give_up_s:
        try:
            sock.sendall(data[position % len(data): position % len(data) + 1])
        except OSError:  # reset or broken pipe: the server closed it
            break
        position += 1
        readable, _, _ = select.select([sock], [], [], TRICKLE_EVERY_S)
        if readable:
            received = _read_all(sock)
            break
    return received, time.monotonic() - started


def _wait_closed(sock: socket.socket, give_up_s: float = GIVE_UP_S) -> tuple[bytes, float]:
    """Send nothing; wait until the server answers or closes. Returns what it sent and the seconds."""
    started = time.monotonic()
    readable, _, _ = select.select([sock], [], [], give_up_s)
    received = _read_all(sock) if readable else b""
    return received, time.monotonic() - started


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (``Content-Length`` framed) from a kept-alive connection."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or _closed()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536) or _closed()
    return head + b"\r\n\r\n" + body


def _closed() -> bytes:
    raise AssertionError("the server closed a kept-alive connection")


def _headers(method: str, path: str, length: int | None = None, extra: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {DELIVERY}"]
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n" + extra).encode()


def _assert_cut_off(received: bytes, elapsed: float, deadline: float, what: str) -> None:
    assert elapsed < deadline + SLACK_S, f"{what}: still open after {elapsed:.1f} s (deadline {deadline} s)"
    assert elapsed >= deadline - 0.2, f"{what}: cut off after {elapsed:.1f} s, before its deadline {deadline} s"
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b"connection: close" in received.lower()


def test_trickled_request_headers_are_answered_408_and_closed(server: VaryProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        received, elapsed = _trickle(sock, b"X-Slow: " + b"a" * 200)
    _assert_cut_off(received, elapsed, HEADER_TIMEOUT_S, "trickled headers")
    assert b"request headers did not arrive within 1.5 s" in received


@pytest.mark.parametrize(
    "path", ["/v1/personalize", "/v1/webhooks/contentful"], ids=["personalize", "unauthenticated-webhook"]
)
def test_trickled_request_body_is_answered_408_and_closed(server: VaryProcess, path: str) -> None:
    body = PERSONALIZE_BODY if path == "/v1/personalize" else b'{"sys": {"id": "x"}}' * 50
    with _connect(server) as sock:
        sock.sendall(_headers("POST", path, len(body)) + b"\r\n")
        received, elapsed = _trickle(sock, body)
    _assert_cut_off(received, elapsed, BODY_TIMEOUT_S, f"trickled body to {path}")
    assert b"request body did not arrive within 2 s" in received
    # The handler waiting for the body got http.disconnect and ended quietly.
    assert "Exception in ASGI application" not in server.output()


def test_a_connection_that_sends_nothing_is_closed_quietly(server: VaryProcess) -> None:
    with _connect(server) as sock:
        received, elapsed = _wait_closed(sock)
    assert elapsed < HEADER_TIMEOUT_S + SLACK_S, f"idle new connection still open after {elapsed:.1f} s"
    assert received == b""  # nothing was asked, so nothing is answered


def test_others_are_served_while_slow_clients_trickle(server: VaryProcess) -> None:
    slow: list[tuple[bytes, float]] = []

    def slow_client(index: int) -> None:
        with _connect(server) as sock:
            if index % 2:
                sock.sendall(_headers("POST", "/v1/personalize", len(PERSONALIZE_BODY)) + b"\r\n")
                slow.append(_trickle(sock, PERSONALIZE_BODY))
            else:
                sock.sendall(b"GET /health HTTP/1.1\r\n")
                slow.append(_trickle(sock, b"X-Slow: " + b"a" * 200))

    threads = [threading.Thread(target=slow_client, args=(i,), daemon=True) for i in range(20)]
    for thread in threads:
        thread.start()
    latencies = []
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {DELIVERY}"}) as client:
        finish = time.monotonic() + BODY_TIMEOUT_S + 0.5
        while time.monotonic() < finish:
            started = time.monotonic()
            response = client.post("/v1/personalize", content=PERSONALIZE_BODY,
                                   headers={"Content-Type": "application/json"}, timeout=5)
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
            time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=GIVE_UP_S + 5)
    assert len(slow) == 20
    for received, elapsed in slow:
        assert received.startswith(b"HTTP/1.1 408 ") and elapsed < BODY_TIMEOUT_S + SLACK_S, (received[:80], elapsed)
    assert max(latencies) < 1.0, f"a normal request waited {max(latencies):.2f} s behind slow clients"


def test_kept_alive_connections_outlive_the_header_deadline_between_requests(server: VaryProcess) -> None:
    """The header deadline counts from a request's first byte: idle time between requests on a
    kept-alive connection is uvicorn's keep-alive timeout's business (75 s), not a slow client."""
    with _connect(server) as sock:
        for _ in range(2):
            sock.sendall(_headers("POST", "/v1/personalize", len(PERSONALIZE_BODY)) + b"\r\n" + PERSONALIZE_BODY)
            answer = _read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            time.sleep(HEADER_TIMEOUT_S + 0.5)


def test_a_large_body_sent_promptly_is_not_cut_off(server: VaryProcess) -> None:
    body = b'{"visitor": {"id": "big"}, "entries": ["bannerNewsletter"], "pad": "' + b"x" * 900_000 + b'"}'
    response = httpx.post(f"{server.base}/v1/personalize", content=body, timeout=10,
                          headers={"Authorization": f"Bearer {DELIVERY}", "Content-Type": "application/json"})
    assert response.status_code != 408


def test_connections_above_the_limit_get_503_until_slow_ones_are_cut(server: VaryProcess) -> None:
    holders = [_connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in holders:
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # begun, never finished
        time.sleep(0.3)
        refused = httpx.get(f"{server.base}/health", timeout=5)
        assert refused.status_code == 503
        time.sleep(HEADER_TIMEOUT_S + SLACK_S)  # the header deadline frees every held connection
        assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200
    finally:
        for sock in holders:
            sock.close()
