"""Sinks against the real Valkey and a real local HTTP server.

The receiver is a genuine HTTP server on a free port that answers each request with the next
status of a script (500s are real 500s). Sleeping between retries is recorded rather than waited
out, so the backoff schedule is checked exactly without a timed test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from personalization.measurement.events import EVENT_ENCODER, Conversion, PageView
from personalization.store.keys import EVENTS, EXPOSURES
from personalization.seams import SinkRecord
from personalization.sinks import SegmentSink, SinkRunner, WebhookSink, dead_letter_stream, group_name, verify_signature
from personalization.types import EXPOSURE_ENCODER, Exposure

SECRET = "sink-secret"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP endpoint: answers with ``statuses`` in order (then ``default``), records requests."""

    url: str
    statuses: list[int] = field(default_factory=list)
    default: int = 200
    requests: list[Received] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [r for req in self.requests for r in json.loads(req.body)["records"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Received(self.path, dict(self.headers), body))
            status = state.statuses.pop(0) if state.statuses else state.default
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _exposure(i: int, visitor: str | None = "v1") -> Exposure:
    return Exposure(
        id=f"exp-{i}", ts=1_780_000_000.0 + i, visitor_id=visitor, session_id=None, channel="web",
        entry_id="heroHome", variant_entry_id="heroHomeSale", experience="hero-sale", variant=1,
        is_control=False, holdout=False, propensity=0.9, segments={"price_sensitive": 0.8},
    )


def _write(sync_redis: redis.Redis, exposures: int = 0, events: int = 0) -> None:
    for i in range(exposures):
        sync_redis.xadd(EXPOSURES, {"data": EXPOSURE_ENCODER.encode(_exposure(i))})
    for i in range(events):
        event = Conversion(visitor_id="v1", goal="signup", value=10.0 + i, ts=1_780_000_100.0 + i, event_id=f"e{i}")
        sync_redis.xadd(EVENTS, {"data": EVENT_ENCODER.encode(event)})


class Sleeps:
    """Records the backoff delays the runner asks for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


async def _drain(runner: SinkRunner, passes: int = 20) -> None:
    for _ in range(passes):
        if not await runner.run_once():
            return


def _runner(redis_url: str, sink: Any, **options: Any) -> tuple[Redis, SinkRunner]:
    client = Redis.from_url(redis_url)
    return client, SinkRunner(client, sink, consumer=options.pop("consumer", "c1"), **options)


def _pending(sync_redis: redis.Redis, name: str) -> int:
    return sum(int(sync_redis.xpending(s, group_name(name))["pending"]) for s in (EXPOSURES, EVENTS))


def test_webhook_posts_signed_batches_and_acknowledges(redis_url: str, sync_redis, receiver: Receiver) -> None:  # noqa: ANN001
    async def run() -> None:
        client, runner = _runner(redis_url, WebhookSink(receiver.url + "/hook", SECRET), batch_size=4)
        await runner.ensure_groups()
        _write(sync_redis, exposures=5, events=3)
        await _drain(runner)
        await runner.aclose()
        await client.aclose()

    asyncio.run(run())
    assert [len(json.loads(r.body)["records"]) for r in receiver.requests] == [4, 3, 1]  # a pass reads each stream once
    for request in receiver.requests:
        assert request.path == "/hook"
        assert verify_signature(SECRET, request.body, request.headers["X-Vary-Timestamp"],
                                request.headers["X-Vary-Signature"])
        assert not verify_signature("other", request.body, request.headers["X-Vary-Timestamp"],
                                    request.headers["X-Vary-Signature"])
        assert not verify_signature(SECRET, request.body + b" ", request.headers["X-Vary-Timestamp"],
                                    request.headers["X-Vary-Signature"])
    records = receiver.records()
    assert [r["data"]["id"] for r in records if r["kind"] == "exposure"] == [f"exp-{i}" for i in range(5)]
    assert [r["data"]["goal"] for r in records if r["kind"] == "event"] == ["signup"] * 3
    assert len({r["message_id"] for r in records}) == 8
    assert _pending(sync_redis, "webhook") == 0


def test_webhook_retries_500s_with_exponential_backoff(redis_url: str, sync_redis, receiver: Receiver) -> None:  # noqa: ANN001
    receiver.statuses = [500, 503, 500]
    sleeps = Sleeps()

    async def run() -> SinkRunner:
        client, runner = _runner(redis_url, WebhookSink(receiver.url, SECRET), backoff_s=0.5, max_attempts=5,
                                 sleep=sleeps)
        await runner.ensure_groups()
        _write(sync_redis, exposures=2)
        await _drain(runner)
        await runner.aclose()
        await client.aclose()
        return runner

    runner = asyncio.run(run())
    assert sleeps.delays == [0.5, 1.0, 2.0]
    assert len(receiver.requests) == 4
    assert len({r.body for r in receiver.requests}) == 1  # every retry re-sends the same batch
    assert [r["data"]["id"] for r in json.loads(receiver.requests[-1].body)["records"]] == ["exp-0", "exp-1"]
    assert runner.stats.delivered == 2 and runner.stats.failed_attempts == 3 and runner.stats.dead_lettered == 0
    assert sync_redis.xlen(dead_letter_stream("webhook")) == 0
    assert _pending(sync_redis, "webhook") == 0


def test_after_n_failures_entries_are_dead_lettered_and_nothing_is_lost(
    redis_url: str, sync_redis, receiver: Receiver  # noqa: ANN001
) -> None:
    receiver.default = 500
    sleeps = Sleeps()

    async def run() -> SinkRunner:
        client, runner = _runner(redis_url, WebhookSink(receiver.url, SECRET), max_attempts=3, sleep=sleeps)
        await runner.ensure_groups()
        _write(sync_redis, exposures=3)
        await _drain(runner)
        receiver.default = 200  # the receiver recovers: later entries are delivered again
        _write(sync_redis, events=2)
        await _drain(runner)
        await runner.aclose()
        await client.aclose()
        return runner

    runner = asyncio.run(run())
    assert len(receiver.requests) == 4  # 3 failed attempts, then the events' batch
    assert sleeps.delays == [0.5, 1.0]
    dead = sync_redis.xrange(dead_letter_stream("webhook"))
    assert len(dead) == 3
    for _, fields in dead:
        assert fields["stream"] == EXPOSURES and fields["kind"] == "exposure" and fields["attempts"] == "3"
        assert "500" in fields["error"] and fields["sink"] == "webhook"
    dead_ids = sorted(json.loads(fields["data"])["id"] for _, fields in dead)
    assert dead_ids == ["exp-0", "exp-1", "exp-2"]
    delivered = json.loads(receiver.requests[-1].body)["records"]
    assert [r["data"]["event_id"] for r in delivered] == ["e0", "e1"]
    assert runner.stats.dead_lettered == 3 and runner.stats.delivered == 2
    assert _pending(sync_redis, "webhook") == 0


def test_a_permanent_4xx_is_dead_lettered_without_retries(redis_url: str, sync_redis, receiver: Receiver) -> None:  # noqa: ANN001
    receiver.default = 401
    sleeps = Sleeps()

    async def run() -> None:
        client, runner = _runner(redis_url, WebhookSink(receiver.url, SECRET), sleep=sleeps)
        await runner.ensure_groups()
        _write(sync_redis, exposures=1)
        await _drain(runner)
        await runner.aclose()
        await client.aclose()

    asyncio.run(run())
    assert len(receiver.requests) == 1 and sleeps.delays == []
    assert sync_redis.xlen(dead_letter_stream("webhook")) == 1


def test_an_undecodable_entry_is_dead_lettered_and_the_rest_delivered(
    redis_url: str, sync_redis, receiver: Receiver  # noqa: ANN001
) -> None:
    async def run() -> None:
        client, runner = _runner(redis_url, WebhookSink(receiver.url, SECRET))
        await runner.ensure_groups()
        sync_redis.xadd(EXPOSURES, {"data": b"{not json"})
        _write(sync_redis, exposures=1)
        await _drain(runner)
        await runner.aclose()
        await client.aclose()

    asyncio.run(run())
    assert [r["data"]["id"] for r in receiver.records()] == ["exp-0"]
    (_, fields), = sync_redis.xrange(dead_letter_stream("webhook"))
    assert fields["error"].startswith("undecodable") and fields["data"] == "{not json"


def test_segment_sink_sends_track_calls_in_the_batch_shape(redis_url: str, sync_redis, receiver: Receiver) -> None:  # noqa: ANN001
    async def run() -> None:
        client, runner = _runner(redis_url, SegmentSink("write-key-1", receiver.url))
        await runner.ensure_groups()
        sync_redis.xadd(EXPOSURES, {"data": EXPOSURE_ENCODER.encode(_exposure(0))})
        sync_redis.xadd(EXPOSURES, {"data": EXPOSURE_ENCODER.encode(_exposure(1, visitor=None))})
        sync_redis.xadd(EVENTS, {"data": EVENT_ENCODER.encode(PageView(visitor_id="v1", page="/sale", ts=1_780_000_050.0))})
        await _drain(runner)
        await runner.aclose()
        await client.aclose()

    asyncio.run(run())
    assert [r.path for r in receiver.requests] == ["/v1/batch", "/v1/batch"]
    auth = receiver.requests[0].headers["Authorization"]
    assert auth == "Basic " + base64.b64encode(b"write-key-1:").decode()
    exposure_batch = json.loads(receiver.requests[0].body)
    assert set(exposure_batch) == {"batch", "sentAt"}
    (track,) = exposure_batch["batch"]  # the exposure without a visitor id is not sent
    assert track["type"] == "track" and track["event"] == "Experience Viewed"
    assert track["anonymousId"] == "v1" and track["messageId"] == "vary-exposure-exp-0"
    assert track["timestamp"] == "2026-05-28T20:26:40.000Z"
    assert track["properties"]["experience"] == "hero-sale" and track["properties"]["variant"] == 1
    assert "visitor_id" not in track["properties"]
    (page,) = json.loads(receiver.requests[1].body)["batch"]
    assert page["event"] == "Page Viewed" and page["properties"] == {
        "session_id": None, "channel": None, "touchpoint": None, "page": "/sale", "referrer": None,
        "vary_type": "page_view",
    }


def test_each_sink_has_its_own_group_and_runners_of_one_sink_share_the_work(
    redis_url: str, sync_redis, receiver: Receiver  # noqa: ANN001
) -> None:
    seen: dict[str, list[str]] = {"a1": [], "a2": [], "b": []}

    class Collect:
        def __init__(self, name: str, key: str) -> None:
            self.name, self.key = name, key

        async def deliver(self, batch: list[SinkRecord]) -> None:
            seen[self.key] += [r.entry_id for r in batch]

    async def run() -> None:
        client = Redis.from_url(redis_url)
        a1 = SinkRunner(client, Collect("a", "a1"), consumer="one", batch_size=3)
        a2 = SinkRunner(client, Collect("a", "a2"), consumer="two", batch_size=3)
        b = SinkRunner(client, Collect("b", "b"), consumer="one")
        for runner in (a1, a2, b):
            await runner.ensure_groups()
        _write(sync_redis, exposures=10)
        for _ in range(6):
            await a1.run_once()
            await a2.run_once()
        await _drain(b)
        await client.aclose()

    asyncio.run(run())
    assert seen["a1"] and seen["a2"]
    assert not set(seen["a1"]) & set(seen["a2"])  # shared, not duplicated
    assert sorted(seen["a1"] + seen["a2"]) == sorted(seen["b"]) and len(seen["b"]) == 10


def test_a_dead_runners_pending_entries_are_claimed_by_another(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    delivered: list[str] = []

    class Hangs:
        name = "crm-export"

        def __init__(self) -> None:
            self.entered: asyncio.Event | None = None

        async def deliver(self, batch: list[SinkRecord]) -> None:
            assert self.entered is not None
            self.entered.set()
            await asyncio.Event().wait()  # the process "dies" mid-delivery

    class Works:
        name = "crm-export"

        async def deliver(self, batch: list[SinkRecord]) -> None:
            delivered.extend(r.entry_id for r in batch)

    async def run() -> None:
        client = Redis.from_url(redis_url)
        hangs = Hangs()
        hangs.entered = asyncio.Event()
        dead = SinkRunner(client, hangs, consumer="dead", idle_sleep_s=0.01)
        await dead.ensure_groups()
        _write(sync_redis, exposures=4)
        task = asyncio.create_task(dead.run_forever())
        await hangs.entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _pending(sync_redis, "crm-export") == 4
        alive = SinkRunner(client, Works(), consumer="alive", claim_idle_s=0.0)
        await _drain(alive)
        assert alive.stats.claimed == 4
        await client.aclose()

    asyncio.run(run())
    assert len(delivered) == 4
    assert _pending(sync_redis, "crm-export") == 0
    consumers = {c["name"]: c["pending"] for c in sync_redis.xinfo_consumers(EXPOSURES, group_name("crm-export"))}
    assert consumers["dead"] == 0
