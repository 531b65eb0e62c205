"""New bundle versions POSTed to ``VARY_BUNDLE_WEBHOOK_URL``: two real app workers on one Valkey, a real
local HTTP receiver, a real guardrail pause — each version announced exactly once, signed, retried."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from redis.asyncio import Redis

from api.app import create_app
from api.settings import Settings, SettingsError, load_settings
from personalization.sinks import verify_signature
from personalization.sinks.bundle_versions import (
    BundleVersionNotice,
    announce_bundle_version,
)
from personalization.store.pauses import pause_variant
from tests.api.conftest import ADMIN, DELIVERY

SECRET = "bundle-webhook-secret"


@dataclass
class Receiver:
    """A real HTTP endpoint answering ``statuses`` in order (then 200); records (status, headers, body)."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)

    def delivered(self) -> list[dict[str, Any]]:
        return [json.loads(body) for status, _, body in self.requests if status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = state.statuses.pop(0) if state.statuses else 200
            state.requests.append((status, dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/edge-kv"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _version(client: TestClient[Any]) -> str:
    return client.get("/v1/bundle", headers={"Authorization": f"Bearer {DELIVERY}"}).headers["x-vary-bundle-version"]


def test_a_pause_is_announced_once_across_workers_signed_and_retried(
    redis_url: str, model_dir: Path, receiver: Receiver
) -> None:
    receiver.statuses = [503]  # the first delivery fails for real: the runner retries it
    settings = Settings(
        redis_url=redis_url, data_dir=model_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,),
        train_demo_model=False, state_refresh_s=0.1, sink_backoff_s=0.05,
        bundle_webhook_url=receiver.url, bundle_webhook_secret=SECRET,
    )
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        first = _version(one)
        assert _version(two) == first
        _wait(lambda: len(receiver.delivered()) == 1, "the starting version")

        async def pause() -> None:
            async with Redis.from_url(redis_url) as redis:
                assert await pause_variant(redis, "banner-shipping-test", 2, "csat fell (test)", "csat", 1, time.time())

        asyncio.run(pause())
        _wait(lambda: _version(one) != first and _version(two) != first, "both workers to serve the paused bundle")
        second = _version(one)
        assert _version(two) == second
        _wait(lambda: len(receiver.delivered()) == 2, "the new version")
        # A third worker starting now is silent: the cluster already announced what it serves.
        with TestClient(create_app(settings)) as three:
            assert _version(three) == second
            time.sleep(1.0)  # several watch passes of three workers
    assert [r[0] for r in receiver.requests] == [503, 200, 200]
    delivered = receiver.delivered()
    assert [n["version"] for n in delivered] == [first, second]
    assert delivered[1] == {"type": "bundle.version", "version": second, "content_version": delivered[0]["content_version"],
                            "url": "/v1/bundle"}
    for _, headers, body in receiver.requests:
        assert verify_signature(SECRET, body, headers["X-Vary-Timestamp"], headers["X-Vary-Signature"])
        assert not verify_signature("another-secret", body, headers["X-Vary-Timestamp"], headers["X-Vary-Signature"])


def test_going_back_to_an_earlier_version_is_announced_again(redis_url: str) -> None:
    """Deduplicated by change, not by version: a pause then a resume announces the old version anew."""

    async def scenario() -> list[bool]:
        async with Redis.from_url(redis_url) as redis:
            v1 = BundleVersionNotice(version="v1", content_version="c1")
            v2 = BundleVersionNotice(version="v2", content_version="c1")
            return [
                await announce_bundle_version(redis, v1, changed=False),  # first worker starts
                await announce_bundle_version(redis, v1, changed=False),  # second worker starts
                await announce_bundle_version(redis, v2, changed=True),   # a pause, seen by one…
                await announce_bundle_version(redis, v2, changed=True),   # …and by the other
                await announce_bundle_version(redis, v1, changed=True),   # the resume
            ]

    assert asyncio.run(scenario()) == [True, False, True, False, True]


def test_a_webhook_url_without_a_secret_is_refused() -> None:
    with pytest.raises(SettingsError, match="VARY_BUNDLE_WEBHOOK_SECRET"):
        load_settings({"VARY_BUNDLE_WEBHOOK_URL": "https://edge.example/kv"})
