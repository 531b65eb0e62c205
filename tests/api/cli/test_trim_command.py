"""``vary trim`` and the retention wiring, in-process against the real Valkey server."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
import redis

from api.cli.main import main
from api.runtime import stream_retention
from api.settings import Settings, load_settings

DAY_MS = 86_400_000


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> str:
    monkeypatch.setenv("VARY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VARY_REDIS_URL", redis_url)
    monkeypatch.delenv("VARY_STREAM_RETENTION_DAYS", raising=False)
    return redis_url


def test_trim_removes_old_entries_of_every_partition_but_not_what_a_group_still_needs(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VARY_STREAM_PARTITIONS", "2")
    store = redis.Redis.from_url(env)
    now_ms = int(time.time() * 1000)
    for stream in ("vary:exposures:{0}", "vary:exposures:{1}", "vary:events:{0}", "vary:events:{1}"):
        for age_days in (40, 35, 20):  # two past a 30-day retention, one within it
            store.xadd(stream, {"data": "x"}, id=f"{now_ms - age_days * DAY_MS}-0")
        store.xadd(stream, {"data": "new"})
    # a consumer group on one event partition has not read anything yet: it holds its entries
    store.xgroup_create("vary:events:{1}", "lagging-sink", id="0")

    assert main(["trim", "--days", "30"]) == 0
    out = capsys.readouterr().out
    lengths = {s: store.xlen(s) for s in ("vary:exposures:{0}", "vary:exposures:{1}", "vary:events:{0}", "vary:events:{1}")}
    store.close()
    assert lengths == {"vary:exposures:{0}": 2, "vary:exposures:{1}": 2, "vary:events:{0}": 2, "vary:events:{1}": 4}
    assert "vary:exposures:{0}: 2 entries before 20" in out  # a UTC time, then the stream id
    assert (
        "vary:events:{1}: 0 entries before 1970-01-01T00:00:00Z (id 0-1) removed "
        "(held back by consumer group 'lagging-sink')" in out
    )


def test_trim_needs_a_retention(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trim"]) == 2
    assert "give --days N" in capsys.readouterr().err


def test_retention_is_off_by_default_and_covers_every_stream_when_set(redis_url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    settings = Settings(redis_url=redis_url)
    assert stream_retention(settings, client) is None  # 0 days: keep everything
    retention = stream_retention(msgspec.structs.replace(settings, stream_retention_days=7, stream_partitions=3), client)
    assert retention is not None and retention.retention_s == 7 * 86_400
    assert len(retention.streams) == 6 and "vary:events:{2}" in retention.streams


def test_a_negative_retention_is_refused_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from api.settings import SettingsError

    monkeypatch.setenv("VARY_STREAM_RETENTION_DAYS", "-1")
    with pytest.raises(SettingsError, match="VARY_STREAM_RETENTION_DAYS=-1"):
        load_settings()


def test_serve_trims_beside_its_aggregator(settings: Settings) -> None:
    """``vary serve`` with a (one-second) retention and the in-process aggregator: an event posted
    through the API is aggregated first, then trimmed (the aggregator's group holds it until then)."""
    from litestar.testing import TestClient

    from api.app import create_app
    from api.http.common import runtime_of

    from tests.api.conftest import DELIVERY

    configured = msgspec.structs.replace(
        settings, aggregate=True, stream_retention_days=1 / 86_400, stream_trim_every_s=0.1
    )
    store = redis.Redis.from_url(settings.redis_url or "")
    with TestClient(create_app(configured)) as client:
        runtime = runtime_of(client.app.state)
        assert any(task.get_name() == "vary-stream-retention" for task in runtime._tasks)
        event = {"type": "page_view", "visitor_id": "trim-1", "session_id": "s", "event_id": "pv-trim-1"}
        response = client.post("/v1/events", json={"events": [event]}, headers={"Authorization": f"Bearer {DELIVERY}"})
        assert response.status_code == 202 and response.json()["accepted"] == 1
        assert store.xlen("vary:events") == 1
        deadline = time.monotonic() + 15
        while store.xlen("vary:events") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runtime.aggregator is not None
        processed = runtime.aggregator.processed
    length = store.xlen("vary:events")
    store.close()
    assert length == 0 and processed >= 1  # trimmed, and only after it was counted
