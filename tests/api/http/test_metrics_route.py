"""``GET /metrics``: admin key only, and the series move under real traffic through the app."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import msgspec
import pytest
import redis
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from api.app import create_app
from api.http.common import runtime_of
from api.loop_lag import INTERVAL_S
from api.metrics import aggregator_backlog
from api.settings import Settings
from personalization.decision.global_holdout import in_global_holdout
from personalization.measurement.aggregation import DEFAULT_GROUP
from personalization.measurement.events import EVENT_STREAM

GLOBAL_SHARE = 0.05  # the demo space's global holdout
VISITORS = [v for v in (f"metrics-visitor-{i}" for i in range(40)) if not in_global_holdout(v, GLOBAL_SHARE)][:8]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, admin: dict[str, str]) -> Samples:
    response = client.get("/metrics", headers=admin)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def test_metrics_need_an_admin_key(client: TestClient, delivery: dict[str, str]) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=delivery).status_code == 403
    assert client.get("/metrics", params={"key": "test-delivery-key"}).status_code == 401


def test_series_move_under_traffic(client: TestClient, delivery: dict[str, str], admin: dict[str, str]) -> None:
    before = scrape(client, admin)
    for visitor in VISITORS:
        body = {"visitor": {"id": visitor, "country": "US"}, "entries": ["heroHome", "bannerShipping"]}
        assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200
    events = [
        {"type": "page_view", "visitor_id": VISITORS[0], "session_id": "metrics-s", "channel": "web"},
        {"type": "page_view", "visitor_id": VISITORS[0], "channel": "carrier-pigeon"},  # rejected: channel
    ]
    answer = client.post("/v1/events", json={"events": events}, headers=delivery)
    assert answer.status_code == 202 and len(answer.json()["rejected"]) == 1
    assert client.get("/no-such-route", headers=admin).status_code == 404

    deadline = time.monotonic() + 5
    after = scrape(client, admin)
    while time.monotonic() < deadline and (
        value(after, "vary_exposures_total", outcome="written") - value(before, "vary_exposures_total", outcome="written")
        < 2 * len(VISITORS)
    ):
        time.sleep(0.1)  # the writer flushes in the background
        after = scrape(client, admin)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    route = {"method": "POST", "route": "/v1/personalize", "status": "200"}
    assert moved("vary_http_request_duration_seconds_count", **route) == len(VISITORS)
    assert moved("vary_http_request_duration_seconds_bucket", le="+Inf", **route) == len(VISITORS)
    assert moved("vary_http_request_duration_seconds_sum", **route) > 0
    assert moved("vary_http_request_duration_seconds_count", route="unmatched", status="404") == 1
    # two entries per request; the experiences' keys come from content, never a visitor id
    assert moved("vary_decisions_total", degraded="false") == 2 * len(VISITORS)
    decided = {dict(labels)["experience"] for (name, labels) in after if name == "vary_decisions_total"}
    assert decided - {""} and not any(v in x for x in decided for v in VISITORS)
    # each request logs two entry exposures and one `_global` exposure
    assert moved("vary_exposures_total", outcome="written") >= 2 * len(VISITORS)
    assert moved("vary_events_total", outcome="accepted") == 1
    assert moved("vary_events_total", outcome="rejected") == 1
    ready = client.get("/ready").json()
    assert value(after, "vary_model_info", version=str(ready["model"])) == 1
    assert value(after, "vary_content_info", version=ready["content_version"], state=ready["content"]) == 1
    age = value(after, "vary_content_age_seconds")
    assert math.isfinite(age) and age >= 0
    assert value(after, "vary_profile_breaker_open") == 0
    assert ("vary_exposures_pending", frozenset()) in after
    for stream in ("exposures", "events"):  # the in-process aggregator's consumer group exists and reads
        assert ("vary_aggregator_lag_entries", frozenset({("stream", stream)})) in after
        assert ("vary_aggregator_pending_entries", frozenset({("stream", stream)})) in after


def test_aggregator_backlog_counts_unread_and_unacknowledged_entries(redis_url: str) -> None:
    async def run() -> dict[str, tuple[int, int]]:
        redis = Redis.from_url(redis_url)
        try:
            await redis.delete("vary:exposures", "vary:events")
            await redis.xgroup_create("vary:events", DEFAULT_GROUP, id="0", mkstream=True)
            for n in range(5):
                await redis.xadd("vary:events", {"n": n})
            await redis.xreadgroup(DEFAULT_GROUP, "metrics-test", {"vary:events": ">"}, count=2)
            return await aggregator_backlog(redis, partitions=1)
        finally:
            await redis.delete("vary:events")
            await redis.aclose()

    backlog = asyncio.run(run())
    assert backlog == {"events": (3, 2)}  # no exposure stream: left out, not reported as 0


@pytest.fixture
def limited(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(msgspec.structs.replace(settings, rate_limit_delivery_per_s=2))) as client:
        yield client


def test_rate_limited_requests_are_counted(
    limited: TestClient, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    before = scrape(limited, admin)
    body = {"visitor": {"id": VISITORS[0]}, "entries": ["heroHome"]}
    codes = [limited.post("/v1/personalize", json=body, headers=delivery).status_code for _ in range(10)]
    after = scrape(limited, admin)
    refused = codes.count(429)
    assert refused > 0
    assert value(after, "vary_rate_limited_requests_total", scope="delivery") - value(
        before, "vary_rate_limited_requests_total", scope="delivery"
    ) == refused
    assert total(after, "vary_http_request_duration_seconds_count", status="429") - total(
        before, "vary_http_request_duration_seconds_count", status="429"
    ) == refused


def test_a_stalled_event_loop_shows_in_the_loop_lag_gauge(client: TestClient, admin: dict[str, str]) -> None:
    """The worker's loop-lag monitor (api/loop_lag.py) reaches /metrics: a 300 ms blocking call in
    the app's event loop shows as a max of at least 300 ms less one sampling interval (the sampler
    may have been asleep that long already when the stall began), the figures /ready shows."""
    least = 0.3 - INTERVAL_S - 0.01

    async def block_the_loop() -> None:
        time.sleep(0.3)  # synchronous: nothing else runs in the loop meanwhile

    client.blocking_portal.call(block_the_loop)
    deadline = time.monotonic() + 5
    samples = scrape(client, admin)
    while time.monotonic() < deadline and value(samples, "vary_event_loop_lag_seconds", stat="max") < least:
        time.sleep(0.05)  # the sampler records the stall when it next wakes up
        samples = scrape(client, admin)
    worst = value(samples, "vary_event_loop_lag_seconds", stat="max")
    p99 = value(samples, "vary_event_loop_lag_seconds", stat="p99")
    assert least <= worst < 5
    assert 0 <= p99 <= worst
    ready = client.get("/ready").json()["loop_lag"]
    assert ready["max_ms"] >= least * 1000  # the scrape and /ready read one monitor


def test_durations_observed_in_bulk_expose_what_one_observe_each_would() -> None:
    """The request timer observes its durations in bulk (issue 22); the exposition must not change:
    same sum, same cumulative buckets, same count, with durations on bucket bounds, below the first,
    above the last, and zero."""
    import random

    from prometheus_client import CollectorRegistry, Histogram

    from api.http.metrics import _observe_all

    buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    rnd = random.Random(7)
    durations = [0.0, 0.001, 0.0025, 10.0, 11.5, 0.0009] + [rnd.expovariate(50) for _ in range(2000)]
    one, bulk = CollectorRegistry(), CollectorRegistry()
    each = Histogram("t_seconds", "t", ["route"], buckets=buckets, registry=one)
    together = Histogram("t_seconds", "t", ["route"], buckets=buckets, registry=bulk)
    for duration in durations:
        each.labels("/v1/x").observe(duration)
    _observe_all(together.labels("/v1/x"), durations[:1000])
    _observe_all(together.labels("/v1/x"), durations[1000:])

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (sample.name, sample.labels.get("le", "")): sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if not sample.name.endswith("_created")  # when each histogram was made
        }

    got, want = samples(bulk), samples(one)
    assert got.keys() == want.keys()
    for name, value in want.items():  # counts exact; the sum up to float rounding (added in another order)
        assert got[name] == (pytest.approx(value, rel=1e-12) if name[0] == "t_seconds_sum" else value), name
    assert got[("t_seconds_count", "")] == got[("t_seconds_bucket", "+Inf")] == len(durations)


#: An event as a newer version's API would store it: a kind this version does not know.
NEWER_KIND = b'{"type":"scroll_depth","visitor_id":"metrics-next","ts":%r,"depth":0.75}'


def test_events_of_an_unknown_kind_the_aggregator_skips_are_counted(
    client: TestClient, admin: dict[str, str], sync_redis: redis.Redis
) -> None:
    """The in-process aggregator skips a stored event of a kind it does not know (a newer worker
    wrote it) and counts it; the count reaches /metrics, where an operator can see an aggregator
    left on an older version."""
    name = "vary_aggregator_unknown_event_kinds_total"
    before = value(scrape(client, admin), name)
    sync_redis.xadd(EVENT_STREAM, {"data": NEWER_KIND % time.time()})
    deadline = time.monotonic() + 10
    after = scrape(client, admin)
    while time.monotonic() < deadline and value(after, name) == before:
        time.sleep(0.1)  # the in-process aggregator reads the stream in the background
        after = scrape(client, admin)
    assert value(after, name) - before == 1
    aggregator = runtime_of(client.app.state).aggregator
    assert aggregator is not None and aggregator.unknown_kinds == 1
    response = client.get("/metrics", headers=admin)
    assert f"# HELP {name} " in response.text and "upgrade the aggregator" in response.text
    assert sync_redis.xpending(EVENT_STREAM, DEFAULT_GROUP)["pending"] == 0  # acknowledged, not poison
