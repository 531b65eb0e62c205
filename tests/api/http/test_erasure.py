"""DELETE /v1/visitors/{id}: afterwards nothing with that id remains anywhere in Redis."""

from __future__ import annotations

import time

import redis
from litestar.testing import TestClient


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
    assert erased["exposures_deleted"] == 2 and erased["events_deleted"] == 3 and erased["keys_deleted"] >= 1

    assert _everything_mentioning(sync_redis, "forget-me-7f3") == []
    assert _everything_mentioning(sync_redis, "keep-me-21c")  # the other visitor is untouched
    assert client.delete("/v1/visitors/forget-me-7f3", headers=admin).json()["keys_deleted"] == 0
