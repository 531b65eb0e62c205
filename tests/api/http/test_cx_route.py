"""GET /v1/cx through the real app: events in via /v1/events, the in-process aggregator, JSON out."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from litestar.testing import TestClient


def _poll(client: TestClient, admin: dict[str, str], ready, timeout_s: float = 8.0) -> dict:  # noqa: ANN001
    """GET /v1/cx until ``ready(body)`` (the in-process aggregator holds events ~2 s for exposures)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get("/v1/cx", headers=admin)
        assert response.status_code == 200, response.text
        body = response.json()
        if ready(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_cx_report_shape_and_values(client: TestClient, delivery: dict[str, str], admin: dict[str, str]) -> None:
    events = [
        {"type": "page_view", "visitor_id": "cx-1", "channel": "web", "touchpoint": "home"},
        {"type": "survey", "visitor_id": "cx-1", "metric": "nps", "score": 10, "channel": "web"},
        {"type": "survey", "visitor_id": "cx-2", "metric": "nps", "score": 3, "channel": "ios"},
        {"type": "survey", "visitor_id": "cx-2", "metric": "csat", "score": 5, "channel": "ios"},
        {"type": "survey", "visitor_id": "cx-2", "metric": "ces", "score": 2, "channel": "ios"},
        {"type": "purchase", "visitor_id": "cx-1", "order_id": "o-1", "value": 20, "channel": "web"},
        {"type": "purchase", "visitor_id": "cx-1", "order_id": "o-2", "value": 30, "channel": "ios"},
    ]
    # One at a time so the events reach the stream (and get their ts) in this order.
    for event in events:
        assert client.post("/v1/events", json={"events": [event]}, headers=delivery).status_code == 202

    body = _poll(
        client, admin, lambda b: b["nps"]["n"] == 2 and b["ces"]["n"] == 1 and b["repeat_purchase_rate"]["score"] == 1.0
    )
    for metric in ("nps", "csat", "ces", "repeat_purchase_rate"):
        assert set(body[metric]) == {"score", "interval", "n"}, metric
    assert body["nps"] == {"score": 0.0, "interval": body["nps"]["interval"], "n": 2}
    assert len(body["nps"]["interval"]) == 2
    assert body["csat"]["score"] == 100.0 and body["csat"]["n"] == 1  # percent
    assert body["ces"]["score"] == 2.0
    assert body["repeat_purchase_rate"]["score"] == 1.0
    this_week = "{}-W{:02d}".format(*datetime.now(timezone.utc).isocalendar()[:2])
    assert body["retention"]["cohorts"][this_week][0] == 1.0 and sum(body["retention"]["sizes"].values()) == 2
    switching = body["channel_switching"]
    assert switching["share"]["n"] == 2 and switching["share"]["score"] == 0.5  # cx-1: web and ios
    assert {"from": "web", "to": "ios", "count": 1} in switching["transitions"]
    assert set(body["by_channel"]) == {"web", "ios"} and set(body["by_segment"]) == {"none"}
    assert body["by_channel"]["ios"]["nps"]["n"] == 1 and body["by_channel"]["ios"]["csat"]["score"] == 100.0
    assert set(body["period"]) == {"since", "until"}

    today = datetime.now(timezone.utc).date().isoformat()
    same = client.get("/v1/cx", params={"since": today, "until": today}, headers=admin).json()
    assert same["nps"] == body["nps"]
    channel_only = client.get("/v1/cx", params={"by": "channel"}, headers=admin).json()
    assert channel_only["by_segment"] == {} and channel_only["by_channel"] == body["by_channel"]
    past = client.get("/v1/cx", params={"since": "2001-01-01", "until": "2001-01-31"}, headers=admin).json()
    assert past["nps"] == {"score": None, "interval": None, "n": 0}
    assert past["period"] == {"since": "2001-01-01", "until": "2001-02-04"}  # whole ISO weeks
    widest = client.get("/v1/cx", params={"since": "0001-01-01", "until": "9999-12-31"}, headers=admin)
    assert widest.status_code == 200 and widest.json()["nps"] == body["nps"]
    assert widest.json()["period"] == {"since": "0001-01-01", "until": "9999-12-31"}


def test_cx_rejects_bad_parameters_and_keys(client: TestClient, delivery: dict[str, str], admin: dict[str, str]) -> None:
    bad = client.get("/v1/cx", params={"since": "yesterday"}, headers=admin)
    assert bad.status_code == 400 and "since" in bad.text
    bad = client.get("/v1/cx", params={"until": "2024-02-30"}, headers=admin)
    assert bad.status_code == 400 and "until" in bad.text
    reversed_ = client.get("/v1/cx", params={"since": "2024-03-01", "until": "2024-02-01"}, headers=admin)
    assert reversed_.status_code == 400 and "since" in reversed_.text
    assert client.get("/v1/cx", params={"by": "country"}, headers=admin).status_code == 400
    assert client.get("/v1/cx", headers=delivery).status_code == 403
    assert client.get("/v1/cx").status_code == 401
    empty = client.get("/v1/cx", headers=admin)
    assert empty.status_code == 200 and empty.json()["nps"]["n"] == 0
