"""DELETE /v1/visitors/{id}: afterwards nothing with that id remains anywhere in Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.store.keys import EVENTS, event_stream_marker


def _everything_mentioning(sync_redis, needle: str) -> list[str]:  # noqa: ANN001
    """Every key, stream entry, hash field, string or set member in Redis that contains ``needle``."""
    raw = redis.Redis(connection_pool=redis.ConnectionPool(**{
        k: v for k, v in sync_redis.connection_pool.connection_kwargs.items() if k != "decode_responses"
    }))
    target = needle.encode()
    found = []
    for key in raw.scan_iter(count=1000):
        kind = raw.type(key)
        if target in key:
            found.append(key)
        elif kind == b"stream":
            found += [f"{key!r}#{i!r}" for i, f in raw.xrange(key) if any(target in v for v in f.values())]
        elif kind == b"hash":
            found += [f"{key!r}.{k!r}" for k, v in raw.hgetall(key).items() if target in k or target in v]
        elif kind == b"string" and target in (raw.get(key) or b""):
            found.append(key)
        elif kind == b"set":
            found += [f"{key!r}:{m!r}" for m in raw.smembers(key) if target in m]
    raw.close()
    return found


def test_erase_removes_every_trace_of_the_visitor(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str], sync_redis  # noqa: ANN001
) -> None:
    for visitor in ("forget-me-7f3", "keep-me-21c"):
        body = {"visitor": {"id": visitor, "country": "US"}, "entries": ["heroHome", "bannerShipping"]}
        assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200
        events = [
            {"type": "page_view", "visitor_id": visitor, "session_id": f"s-{visitor}", "channel": "web"},
            {"type": "conversion", "visitor_id": visitor, "goal": "signup", "event_id": f"e-{visitor}"},
            {"type": "survey", "visitor_id": visitor, "metric": "nps", "score": 9},
        ]
        assert client.post("/v1/events", json={"events": events}, headers=delivery).status_code == 202
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _everything_mentioning(sync_redis, "forget-me-7f3"):
        time.sleep(0.05)
    time.sleep(0.5)  # let the writer and the in-process aggregator catch up
    assert _everything_mentioning(sync_redis, "forget-me-7f3")

    assert client.delete("/v1/visitors/forget-me-7f3", headers=delivery).status_code == 403
    response = client.delete("/v1/visitors/forget-me-7f3", headers=admin)
    assert response.status_code == 200, response.text
    erased = response.json()
    # 2 entries + the demo's global holdout exposure (experience "_global", issue #18)
    assert erased["exposures_deleted"] == 3 and erased["events_deleted"] == 3 and erased["keys_deleted"] >= 1

    assert _everything_mentioning(sync_redis, "forget-me-7f3") == []
    assert _everything_mentioning(sync_redis, "keep-me-21c")  # the other visitor is untouched
    assert client.delete("/v1/visitors/forget-me-7f3", headers=admin).json()["keys_deleted"] == 0


# ------------------------------------------------------------------- every copy, not only Redis (#17.4)


@pytest.fixture
def own_data_dir(settings: Settings, tmp_path: Path) -> Settings:
    """The API settings with a data dir of this test's own (exports, spools), sharing the session's model."""
    (tmp_path / "models").symlink_to(Path(settings.data_dir) / "models", target_is_directory=True)
    return msgspec.structs.replace(settings, data_dir=tmp_path)


def _feed(client: TestClient, delivery: dict[str, str], visitor: str) -> None:
    body = {"visitor": {"id": visitor, "country": "US"}, "entries": ["heroHome", "bannerShipping"]}
    assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200
    time.sleep(0.05)  # the exposure is recorded before the feedback: the feedback falls in its window
    events = [
        {"type": "feedback", "visitor_id": visitor, "text": "hard to find", "problem": f"tag of {visitor}",
         "touchpoint": "checkout", "event_id": f"fb-{visitor}"},
        {"type": "feedback", "visitor_id": visitor, "text": "same as others", "problem": "shared words",
         "touchpoint": "checkout", "event_id": f"fb2-{visitor}"},
        {"type": "conversion", "visitor_id": visitor, "goal": "signup", "event_id": f"e-{visitor}"},
    ]
    assert client.post("/v1/events", json={"events": events}, headers=delivery).status_code == 202


def _problem_tags(sync_redis) -> set[str]:  # noqa: ANN001
    return {tag for key in sync_redis.scan_iter(match="vary:agg:*problems*") for tag in sync_redis.smembers(key)}


def _exported_rows(root: Path) -> dict[str, list[str | None]]:
    return {
        table: pq.read_table(root / table).column("visitor_id").to_pylist() if (root / table).exists() else []
        for table in ("exposures", "events")
    }


def test_erase_reaches_exports_markers_and_problem_tags_and_nothing_of_others(
    own_data_dir: Settings, delivery: dict[str, str], admin: dict[str, str], sync_redis  # noqa: ANN001
) -> None:
    """Before #17.4 the Parquet export kept the visitor's rows, the event markers ``{…}:e:<digest>``
    and the free-text ``problem`` tags survived; now all go, and the other visitor keeps everything."""
    gone, kept = "forget-me-parquet", "keep-me-parquet"
    with TestClient(create_app(own_data_dir)) as client:
        for visitor in (gone, kept):
            _feed(client, delivery, visitor)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not {f"tag of {gone}", f"tag of {kept}"} <= _problem_tags(sync_redis):
            time.sleep(0.05)
        assert {f"tag of {gone}", f"tag of {kept}", "shared words"} <= _problem_tags(sync_redis)
        today = datetime.now(UTC).date().isoformat()
        exported = client.post("/v1/export", json={"since": today}, headers=admin)
        assert exported.status_code == 200, exported.text
        root = Path(own_data_dir.data_dir) / "exports"
        before = _exported_rows(root)
        # 2 entries + the demo's global holdout exposure ("_global", issue #18)
        assert before["exposures"].count(gone) == 3 and before["events"].count(gone) == 3
        markers = {v: event_stream_marker(EVENTS, v, f"e-{v}") for v in (gone, kept)}
        assert all(sync_redis.exists(m) for m in markers.values())

        response = client.delete(f"/v1/visitors/{gone}", headers=admin)
        assert response.status_code == 200, response.text
        erased = response.json()

    assert erased["export_rows_deleted"] == 6 and erased["export_files_rewritten"] == 2  # 3 exposures + 3 events
    assert erased["markers_deleted"] == 3 and erased["problem_tags_removed"] >= 1
    assert erased["sink_notices"] == 1 and erased["aof_rewrite"] == "external"
    after = _exported_rows(root)
    assert gone not in after["exposures"] + after["events"]
    assert after["exposures"].count(kept) == before["exposures"].count(kept) == 3
    assert after["events"].count(kept) == before["events"].count(kept) == 3
    # The rewritten files are whole Parquet with the exporter's schema, and nothing hidden is left.
    assert str(pq.read_table(root / "events").schema.field("visitor_id").type) == "string"
    assert not [p for p in root.rglob(".*")]
    assert not sync_redis.exists(markers[gone]) and sync_redis.exists(markers[kept])
    tags = _problem_tags(sync_redis)
    assert f"tag of {gone}" not in tags and f"tag of {kept}" in tags
    assert "shared words" in tags  # the other visitor gave the same words: the tag is theirs too
    assert _everything_mentioning(sync_redis, gone) == []
