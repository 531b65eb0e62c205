"""``POST /v1/events`` takes ISO 8601 times; the stream carries epoch seconds; a bad time rejects its event."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from litestar.testing import TestClient


def test_iso_ts_is_accepted_and_stored_as_epoch_seconds(
    client: TestClient, delivery: dict[str, str], sync_redis
) -> None:
    events = [
        {"type": "conversion", "visitor_id": "v", "goal": "g", "ts": "2026-12-03T11:15:00.5+01:00", "event_id": "a"},
        {"type": "page_view", "visitor_id": "v", "ts": 1_796_292_900, "event_id": "b"},
        {"type": "page_view", "visitor_id": "v", "ts": "2026-12-03 10:15", "event_id": "c"},
    ]
    response = client.post("/v1/events", json={"events": events}, headers=delivery)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 2
    (rejected,) = body["rejected"]
    assert rejected["index"] == 2 and rejected["field"] == "ts"
    stored = {
        e["event_id"]: e["ts"]
        for _, fields in sync_redis.xrange("vary:events")
        for e in [msgspec.json.decode(fields["data"])]
    }
    noon = datetime(2026, 12, 3, 10, 15, tzinfo=UTC).timestamp()
    assert stored == {"a": noon + 0.5, "b": noon}


def test_a_batch_of_only_bad_times_is_a_400_not_a_500(client: TestClient, delivery: dict[str, str]) -> None:
    response = client.post(
        "/v1/events", json={"events": [{"type": "click", "visitor_id": "v", "ts": "soon"}]}, headers=delivery
    )
    assert response.status_code == 400, response.text
    assert response.json()["extra"][0]["key"] == "events[0].ts"
