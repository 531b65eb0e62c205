"""Redis full (``maxmemory`` reached, ``noeviction``): writes are refused with ``OOM``, nothing is lost.

A real Valkey of this test's own, squeezed with ``CONFIG SET maxmemory 1mb`` once the app is up:
decisions keep answering 200 (profile reads still work), exposures and events go to the local spools,
``/ready`` says ``redis_oom: true``; once there is room again (``maxmemory 0``) the spools are replayed
and every exposure and event is in Redis exactly once. A second case: an evicting policy is named by
``/ready`` and warned about at start (docs/scaling.md "Memory").
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from api.embedded.valkey import EmbeddedRedis
from api.settings import Settings

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer oom-admin"}
DELIVERY = {"Authorization": "Bearer oom-delivery"}


@pytest.fixture
def own_valkey(tmp_path: Path, model_dir: Path) -> Iterator[tuple[EmbeddedRedis, Path]]:
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir, data_dir)
    server = EmbeddedRedis(tmp_path / "valkey", appendonly=False)
    server.start()
    try:
        yield server, data_dir
    finally:
        server.stop()


def _settings(url: str, data_dir: Path) -> Settings:
    return Settings(redis_url=url, data_dir=data_dir, delivery_keys=("oom-delivery",), admin_keys=("oom-admin",),
                    train_demo_model=False, aggregate=False)


def _stream_entries(client: redis.Redis, prefix: str) -> list[dict[bytes, bytes]]:
    entries = []
    for key in client.scan_iter(match=f"{prefix}*", _type="stream"):
        entries += [fields for _, fields in client.xrange(key)]
    return entries


def _ready(app: TestClient) -> dict[str, Any]:
    return app.get("/ready").json()  # type: ignore[no-any-return]


def test_when_redis_refuses_writes_for_memory_exposures_and_events_spool_and_ready_says_so(
    own_valkey: tuple[EmbeddedRedis, Path],
) -> None:
    server, data_dir = own_valkey
    client = redis.Redis.from_url(server.url)
    with TestClient(create_app(_settings(server.url, data_dir))) as app:
        ready = _ready(app)
        assert ready["redis_eviction_policy"] == "noeviction" and ready["redis_oom"] is False

        client.config_set("maxmemory", "1mb")  # the content snapshot alone is more: every write is refused
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("vary:test:probe", "x")
        ready = _ready(app)
        assert ready["redis_oom"] is True and ready["redis"] == "ok"

        visitors = [f"oom-{i}" for i in range(20)]
        for visitor in visitors:
            answer = app.post("/v1/personalize", json={"visitor": {"id": visitor}, "entries": ["heroHome"]},
                              headers=DELIVERY)
            assert answer.status_code == 200, answer.text
            event = {"type": "page_view", "visitor_id": visitor, "session_id": f"s-{visitor}", "channel": "web"}
            sent = app.post("/v1/events", json={"events": [event]}, headers=DELIVERY)
            assert sent.status_code == 202, sent.text  # spooled, not a 503
        deadline = time.monotonic() + 15
        while (ready := _ready(app))["exposures_spooled"] < len(visitors):
            assert time.monotonic() < deadline, f"exposures not spooled: {ready}"
            time.sleep(0.2)
        assert ready["events_spooled"] == len(visitors) and ready["events_spool_bytes"] > 0
        assert ready["spool_bytes"] > 0 and ready["redis_oom"] is True
        assert _stream_entries(client, "vary:exposures") == [] and _stream_entries(client, "vary:events") == []

        client.config_set("maxmemory", "0")  # room again: the spools are replayed
        deadline = time.monotonic() + 20
        while True:
            ready = _ready(app)
            if (ready["exposures_replayed"] >= len(visitors) and ready["events_replayed"] == len(visitors)
                    and ready["spool_bytes"] == 0 and ready["events_spool_bytes"] == 0):
                break
            assert time.monotonic() < deadline, f"spools not replayed: {ready}"
            time.sleep(0.2)
        assert ready["redis_oom"] is False
    exposures = _stream_entries(client, "vary:exposures")
    events = _stream_entries(client, "vary:events")
    client.close()
    exposed = [msgspec.json.decode(e[b"data"]) for e in exposures]
    exposed = [e for e in exposed if str(e["visitor_id"]).startswith("oom-")]
    ids = [e["id"] for e in exposed]
    assert len(ids) == len(set(ids)) == ready["exposures_replayed"]  # every exposure once: none lost, none twice
    assert {e["visitor_id"] for e in exposed} == set(visitors)
    assert len([e for e in events if any(b"oom-" in value for value in e.values())]) == len(visitors)


class _Kept(logging.Handler):
    """The records of one logger (the app sets up the root's handlers itself, so caplog misses them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_an_evicting_policy_is_named_by_ready_and_warned_about_at_start(
    own_valkey: tuple[EmbeddedRedis, Path],
) -> None:
    server, data_dir = own_valkey
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()
    kept = _Kept()
    logger = logging.getLogger("vary.redis")
    app = create_app(_settings(server.url, data_dir))
    logger.addHandler(kept)
    try:
        with TestClient(app) as running:
            ready = _ready(running)
    finally:
        logger.removeHandler(kept)
    assert ready["redis_eviction_policy"] == "allkeys-lru" and ready["redis_oom"] is False
    assert any("allkeys-lru" in m and "noeviction" in m for m in kept.messages), kept.messages
