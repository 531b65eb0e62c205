"""Goal names Vary reserves (``n:…``, personalization/types.py): refused at ``POST /v1/events`` with
the field named, while the batch's other events are taken — nothing reaches the event stream."""

from __future__ import annotations

import redis
from litestar.testing import TestClient

from personalization.measurement.events import EVENT_STREAM


def test_a_conversion_with_a_reserved_goal_name_is_rejected_naming_the_goal(
    client: TestClient, delivery: dict[str, str], sync_redis: redis.Redis
) -> None:
    events = [
        {"type": "conversion", "visitor_id": "goal-names-1", "goal": "signup", "event_id": "ok-1"},
        {"type": "conversion", "visitor_id": "goal-names-1", "goal": "n:signup", "event_id": "bad-1"},
    ]
    answer = client.post("/v1/events", json={"events": events}, headers=delivery)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    (rejected,) = body["rejected"]
    assert rejected["index"] == 1 and rejected["field"] == "goal"
    assert "reserved" in rejected["message"] and "n:signup" in rejected["message"]
    stored = [fields["data"] for _, fields in sync_redis.xrange(EVENT_STREAM)]
    assert len(stored) == 1 and '"goal":"signup"' in stored[0]

    # every event of the batch bad: a 400 that names the event and the field
    alone = client.post("/v1/events", json={"events": events[1:]}, headers=delivery)
    assert alone.status_code == 400, alone.text
    assert "goal" in alone.text and "reserved" in alone.text
    assert sync_redis.xlen(EVENT_STREAM) == 1
