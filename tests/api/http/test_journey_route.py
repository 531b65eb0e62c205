"""``GET /v1/journeys/{key}`` over the demo space's shopping journey, the real app and Valkey."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone

from litestar.testing import TestClient


def _wait_for(sync_redis, stream: str, n: int) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sync_redis.xlen(stream) < n:
        time.sleep(0.02)
    assert sync_redis.xlen(stream) >= n


def test_journey_map_per_variant_of_an_experience(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str], sync_redis
) -> None:  # noqa: ANN001
    groups: dict[str, str] = {}
    for i in range(12):
        visitor = f"journey-{i}"
        body = {"visitor": {"id": visitor, "channel": "ios" if i % 3 == 0 else "web"}, "entries": ["bannerShipping"]}
        response = client.post("/v1/personalize", json=body, headers=delivery)
        assert response.status_code == 200, response.text
        entry = response.json()["entries"][0]
        if entry["experience"] == "banner-shipping-test":
            groups[visitor] = "holdout" if entry["holdout"] else str(entry["variant"])
    _wait_for(sync_redis, "vary:exposures", 12)

    events = []
    for i in range(12):
        visitor, channel = f"journey-{i}", "ios" if i % 3 == 0 else "web"
        events.append({"type": "page_view", "visitor_id": visitor, "channel": channel, "touchpoint": "home"})
        if i % 2 == 0:  # half evaluate a product, a quarter of all click into the cart
            events.append({"type": "page_view", "visitor_id": visitor, "channel": channel, "touchpoint": "product"})
        if i % 4 == 0:
            events.append({"type": "click", "visitor_id": visitor, "channel": channel, "touchpoint": "cart"})
    events.append({"type": "page_view", "visitor_id": "never-exposed", "touchpoint": "home"})
    accepted = client.post("/v1/events", json={"events": events}, headers=delivery)
    assert accepted.status_code == 202, accepted.text

    response = client.get(
        "/v1/journeys/shopping", params={"experience": "banner-shipping-test"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["journey"] == "shopping" and body["name"] == "Shopping journey"
    assert body["experience"] == "banner-shipping-test" and body["truncated"] is False
    assert [s["key"] for s in body["stages"]] == ["find", "evaluate", "decide", "buy", "engage"]
    assert body["unexposed_visitors"] == 1 + (12 - len(groups))
    assert {"0", "1", "2"} <= set(body["variants"])
    sizes = Counter(groups.values())
    for variant, report in body["variants"].items():
        members = [int(v.split("-")[1]) for v, g in groups.items() if g == variant]
        assert report["visitors"] == sizes[variant]
        find, evaluate, decide, buy, _ = report["stages"]
        assert find["reached"] == len(members)
        assert evaluate["reached"] == evaluate["reached_after_previous"] == sum(1 for i in members if i % 2 == 0)
        assert decide["reached"] == sum(1 for i in members if i % 4 == 0)
        assert buy["reached"] == 0 and decide["drop_off"]["score"] in (None, 1.0)
        assert find["continued"] == evaluate["reached_after_previous"]
        if members:
            assert find["drop_off"]["n"] == len(members)
            assert sum(c["visitors"] for c in find["channels"].values()) == len(members)
        assert "click_through_rate" in decide["ux"] and "nps" in decide["cx"]
    everyone = client.get("/v1/journeys/shopping", headers=admin).json()
    assert list(everyone["variants"]) == ["all"] and everyone["experience"] is None
    assert everyone["variants"]["all"]["stages"][0]["reached"] == 13
    assert everyone["variants"]["all"]["transitions"][0]["visitors"] >= 1


def test_journey_period_parameters(client: TestClient, admin: dict[str, str]) -> None:
    today = datetime.now(timezone.utc).date().isoformat()
    ok = client.get("/v1/journeys/shopping", params={"since": "2025-06-01", "until": today}, headers=admin)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["since"] == datetime(2025, 6, 1, tzinfo=timezone.utc).timestamp()
    assert body["until"] - body["since"] > 86_400  # a bare until date includes that day
    offset = client.get("/v1/journeys/shopping", params={"since": "2025-06-01T12:00:00+02:00"}, headers=admin)
    assert offset.status_code == 200 and offset.json()["since"] == datetime(2025, 6, 1, 10, tzinfo=timezone.utc).timestamp()


def test_journey_errors(client: TestClient, admin: dict[str, str], delivery: dict[str, str]) -> None:
    unknown = client.get("/v1/journeys/nope", headers=admin)
    assert unknown.status_code == 404 and "no journey with key 'nope'" in unknown.json()["detail"]
    no_experience = client.get("/v1/journeys/shopping", params={"experience": "nope"}, headers=admin)
    assert no_experience.status_code == 404 and "no experience" in no_experience.json()["detail"]
    bad_date = client.get("/v1/journeys/shopping", params={"since": "last tuesday"}, headers=admin)
    assert bad_date.status_code == 400 and "ISO 8601" in bad_date.json()["detail"]
    bad_until = client.get("/v1/journeys/shopping", params={"until": "2025-13-01"}, headers=admin)
    assert bad_until.status_code == 400
    backwards = client.get(
        "/v1/journeys/shopping", params={"since": "2025-07-01", "until": "2025-06-01"}, headers=admin
    )
    assert backwards.status_code == 400 and "before until" in backwards.json()["detail"]
    future = client.get("/v1/journeys/shopping", params={"since": "2999-01-01"}, headers=admin)
    assert future.status_code == 400
    assert client.get("/v1/journeys/shopping", headers=delivery).status_code in (401, 403)
