"""The direct path (api/http/direct.py): ``vary serve``'s protocol answers ``POST /v1/personalize``
beneath ASGI exactly as the ASGI stack does.

Two real uvicorn servers run in this process, each with Vary's protocol and its own app (each on its
own database of the session's Valkey): one with the direct path, one without. The same requests go
to both over real sockets, and every answer must match; raw-socket requests check what the protocol
now does itself (pipelining, ``Connection: close``, HTTP/1.0, ``100 Continue``, a body in pieces).
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar
from prometheus_client import REGISTRY

from api.app import create_app
from api.http.direct import direct_route
from api.logging_access import install_access_log
from api.server import DeadlineHttpToolsProtocol
from api.settings import Settings
from tests.api.conftest import DELIVERY
from tests.api.http.test_hot_path import BODY, CASES, _without_ids, post_case, summary
from tests.api.http.test_hot_path_events import CASES as EVENT_CASES
from tests.api.http.test_hot_path_events import SECRET as EVENTS_SECRET

BEARER = {"Authorization": f"Bearer {DELIVERY}"}


class Served:
    """One app on a real uvicorn server with Vary's protocol, in a thread of this process."""

    def __init__(self, app: Litestar, direct: bool) -> None:
        self.app = app
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        protocol = functools.partial(DeadlineHttpToolsProtocol, header_timeout_s=5.0, body_timeout_s=5.0, direct=direct)
        config = uvicorn.Config(app, http=protocol, lifespan="on", log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def route(self) -> Any:
        return direct_route(self.server.config.loaded_app)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def _app(settings: Settings, db: int, **changes: Any) -> Litestar:
    app = create_app(msgspec.structs.replace(settings, redis_url=f"{settings.redis_url.rstrip('/')}/{db}", **changes))
    install_access_log(app)  # as vary serve does
    return app


@pytest.fixture
def both(settings: Settings) -> Iterator[tuple[Served, Served]]:
    direct, stack = Served(_app(settings, 3), direct=True), Served(_app(settings, 4), direct=False)
    try:
        yield direct, stack
    finally:
        direct.stop()
        stack.stop()


def _answer(base: str, case: dict[str, Any]) -> tuple[int, str, Any]:
    with httpx.Client(base_url=base, timeout=10) as client:
        status, content_type, data = summary(post_case(client, "/v1/personalize", case))
    return status, content_type, _without_ids(data)


def test_every_case_gets_the_same_answer_with_and_without_the_direct_path(both: tuple[Served, Served]) -> None:
    direct, stack = both
    assert direct.route is not None and direct.route.timer is not None and direct.route.access
    for name, case in CASES:
        ours, theirs = _answer(direct.base, case), _answer(stack.base, case)
        assert ours == theirs, name
        assert ours[0] < 500, (name, ours)


def test_every_events_case_gets_the_same_answer_with_and_without_the_direct_path(settings: Settings) -> None:
    with_secret = msgspec.structs.replace(settings, identity_secret=EVENTS_SECRET)
    direct, stack = Served(_app(with_secret, 10), direct=True), Served(_app(with_secret, 11), direct=False)
    try:
        before = direct.route.answered
        with httpx.Client(timeout=10) as client:
            for name, case in EVENT_CASES:
                answers = []
                for served in (direct, stack):
                    response = post_case(client, f"{served.base}/v1/events", case)
                    answers.append((response.status_code, response.headers.get("content-type"), response.text))
                assert answers[0] == answers[1], name
                assert answers[0][0] < 500, (name, answers[0])
        assert direct.route.answered - before >= 8  # the well-formed batches with a header key
    finally:
        direct.stop()
        stack.stop()


def test_ordinary_requests_are_answered_directly_and_unusual_ones_by_the_stack(both: tuple[Served, Served]) -> None:
    direct, _ = both
    route, hot = direct.route, direct.app.state.hot_path
    before = (route.answered, hot.handed_over)
    assert _answer(direct.base, {"body": BODY})[0] == 200
    assert _answer(direct.base, {"body": {**BODY, "entries": ["nope"]}})[0] == 404  # after the decode: answered here
    assert _answer(direct.base, {"body": BODY, "headers": {"Authorization": "Bearer wrong"}})[0] == 401
    assert _answer(direct.base, {"body": {**BODY, "entries": "x"}})[0] == 400
    assert (route.answered - before[0], hot.handed_over - before[1]) == (2, 2)


def test_the_headers_of_a_direct_answer_are_the_servers(both: tuple[Served, Served]) -> None:
    direct, stack = both
    with httpx.Client(timeout=10) as client:
        ours = client.post(f"{direct.base}/v1/personalize", json=BODY, headers=BEARER)
        theirs = client.post(f"{stack.base}/v1/personalize", json=BODY, headers=BEARER)
    assert ours.status_code == theirs.status_code == 200
    assert sorted(ours.headers.keys()) == sorted(theirs.headers.keys()) == ["content-length", "content-type", "date", "server"]
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "application/json"
    assert int(ours.headers["content-length"]) == len(ours.content)


def _request(visitor: str, *, extra: bytes = b"", body: bytes | None = None, version: bytes = b"1.1") -> bytes:
    payload = body if body is not None else json.dumps({**BODY, "visitor": {"id": visitor}}).encode()
    return (
        b"POST /v1/personalize HTTP/" + version + b"\r\nHost: x\r\nAuthorization: Bearer " + DELIVERY.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(payload) + extra + b"\r\n" + payload
    )


def _responses(sock: socket.socket, count: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """``count`` responses read off ``sock`` (status line, headers, body by content-length)."""
    buffer = b""
    answers = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(answers)} responses"
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(b":", 1) for line in lines)}
        if status.startswith(b"HTTP/1.1 100"):
            continue
        length = int(headers[b"content-length"])
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk
            buffer += chunk
        answers.append((status, headers, buffer[:length]))
        buffer = buffer[length:]
    return answers


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_pipelined_requests_are_answered_in_order(both: tuple[Served, Served]) -> None:
    direct, _ = both
    before = direct.route.answered
    with socket.create_connection(("127.0.0.1", direct.port), timeout=10) as sock:
        sock.sendall(b"".join(_request(f"pipe-{i}") for i in range(3)))  # three requests in one write
        answers = _responses(sock, 3)
    assert [status for status, _, _ in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert [json.loads(body)["visitor_id"] for _, _, body in answers] == ["pipe-0", "pipe-1", "pipe-2"]
    assert direct.route.answered - before == 3


def test_connection_close_and_http_1_0_close_after_the_answer(both: tuple[Served, Served]) -> None:
    direct, _ = both
    with socket.create_connection(("127.0.0.1", direct.port), timeout=10) as sock:
        sock.sendall(_request("close-1", extra=b"Connection: close\r\n"))
        (status, headers, _), = _responses(sock, 1)
        assert status == b"HTTP/1.1 200 OK" and headers[b"connection"] == b"close"
        assert _closed(sock)
    with socket.create_connection(("127.0.0.1", direct.port), timeout=10) as sock:
        sock.sendall(_request("old-1", version=b"1.0"))
        (status, headers, body), = _responses(sock, 1)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["visitor_id"] == "old-1"
        assert _closed(sock)


def test_a_body_sent_in_pieces_or_after_100_continue_is_read_whole(both: tuple[Served, Served]) -> None:
    direct, _ = both
    before = direct.route.answered
    request = _request("pieces-1")
    with socket.create_connection(("127.0.0.1", direct.port), timeout=10) as sock:
        cut = request.index(b"\r\n\r\n") + 4 + 40
        sock.sendall(request[:cut])
        time.sleep(0.2)
        sock.sendall(request[cut:])
        (status, _, body), = _responses(sock, 1)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["visitor_id"] == "pieces-1"
    request = _request("expect-1", extra=b"Expect: 100-continue\r\n")
    head, payload = request.split(b"\r\n\r\n", 1)
    with socket.create_connection(("127.0.0.1", direct.port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(payload)
        (status, _, body), = _responses(sock, 1)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["visitor_id"] == "expect-1"
    assert direct.route.answered - before == 2


def test_an_oversized_body_goes_to_the_stack_for_its_413(settings: Settings) -> None:
    small = Served(_app(settings, 5, max_body_bytes=2_000), direct=True)
    try:
        big = json.dumps({**BODY, "visitor": {"id": "x" * 100, "page": "/" + "p" * 3_000}}).encode()
        with httpx.Client(base_url=small.base, timeout=10) as client:
            declared = client.post("/v1/personalize", content=big, headers={**BEARER, "content-type": "application/json"})
            chunked = client.post("/v1/personalize", content=iter([big[:1500], big[1500:]]),
                                  headers={**BEARER, "content-type": "application/json"})
        assert (declared.status_code, chunked.status_code) == (413, 413)
        assert small.route.answered == 0
    finally:
        small.stop()


def test_a_cors_request_goes_through_the_stack_and_gets_its_headers(settings: Settings) -> None:
    served = Served(_app(settings, 6, cors_origins=("https://shop.example",)), direct=True)
    try:
        route = served.route
        assert route is not None and route.cors
        with httpx.Client(base_url=served.base, timeout=10) as client:
            browser = client.post("/v1/personalize", json=BODY, headers={**BEARER, "Origin": "https://shop.example"})
            plain = client.post("/v1/personalize", json=BODY, headers=BEARER)
        assert browser.status_code == plain.status_code == 200
        assert browser.headers["access-control-allow-origin"] == "https://shop.example"
        assert "access-control-allow-origin" not in plain.headers
        assert route.answered == 1  # the plain one
    finally:
        served.stop()


def test_direct_answers_are_timed_like_every_other_request(both: tuple[Served, Served]) -> None:
    direct, _ = both
    labels = {"method": "POST", "route": "/v1/personalize", "status": "200"}

    def count() -> float:
        direct.app.state.request_timer.flush()
        return REGISTRY.get_sample_value("vary_http_request_duration_seconds_count", labels) or 0.0

    before = count()
    for i in range(3):
        assert _answer(direct.base, {"body": {**BODY, "visitor": {"id": f"timed-{i}"}}})[0] == 200
    assert count() - before == 3


def test_a_layer_it_cannot_reproduce_turns_the_direct_path_off(settings: Settings) -> None:
    app = _app(settings, 7)
    assert direct_route(app) is not None
    other = _app(settings, 7)

    class Stamp:  # a plugin's middleware: the direct path cannot know what it does
        def __init__(self, inner: Any) -> None:
            self.app = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    other.asgi_handler = Stamp(other.asgi_handler)
    assert direct_route(other) is None
    served = Served(other, direct=True)
    try:
        assert _answer(served.base, {"body": BODY})[0] == 200
        assert other.state.hot_path.answered == 1  # the lean path, inside the ASGI stack
    finally:
        served.stop()


def test_vary_serve_turns_it_on_unless_either_switch_is_off(settings: Settings) -> None:
    from api.server import uvicorn_options

    def direct(**changes: Any) -> bool:
        return uvicorn_options(msgspec.structs.replace(settings, **changes))["http"].keywords["direct"]

    assert direct() is True
    assert direct(direct_path=False) is False
    assert direct(hot_path=False) is False  # no lean path: nothing for the protocol to call
