"""The bounded per-visitor history against a real Valkey: events write it (once per event id, within its
bounds, only with analytics consent), the profile read brings it in the same round trip, erasure
removes it, and a personalize decision matches a Ninetailed history rule over it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from api.embedded.cluster import EmbeddedCluster
from api.redis_client import async_redis
from api.settings import Settings
from content.experiences import ninetailed_history
from content.experiences.ninetailed_rules import rules_condition
from personalization.decision.audience_validate import validate_condition
from personalization.decision.decide import EntryRequest, decide
from personalization.measurement.events import Conversion, Event, PageView
from personalization.measurement.recorder import EventRecorder
from personalization.store import visitor_history
from personalization.store.erasure import erase_visitor
from personalization.store.keys import history_key, profile_key
from personalization.store.profiles import PROFILE_TTL_S, RedisProfileStore
from personalization.types import Audience, Experience, Visitor


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def record(url: str, events: list[Event]) -> None:
    client = Redis.from_url(url)
    try:
        await EventRecorder(client).record(events)
    finally:
        await client.aclose()


async def load(url: str, visitor_id: str) -> Any:
    client = Redis.from_url(url)
    try:
        return await RedisProfileStore(client).load(visitor_id)
    finally:
        await client.aclose()


def view(page: str, ts: float, visitor: str = "v1", event_id: str | None = None) -> PageView:
    return PageView(visitor_id=visitor, page=page, ts=ts, event_id=event_id)


def test_page_views_and_conversions_are_kept_with_counts_and_times(redis_url: str, sync_redis: redis.Redis) -> None:
    now = time.time()
    run(record(redis_url, [
        view("https://shop.example/pricing?utm_source=x#top", now - 300, event_id="a"),
        view("/pricing", now - 200),
        view("https://shop.example/pricing", now - 100),
        view("https://shop.example/pricing", now - 100, event_id="a"),  # a retry: not counted again
        Conversion(visitor_id="v1", goal="signup", ts=now - 50),
        Conversion(visitor_id="v1", goal="signup", ts=now - 400),  # late: kept in time order
    ]))
    stored = sync_redis.hgetall(history_key("v1"))
    assert stored == {
        "p:https://shop.example/pricing": f"2 {int(now - 300)} {int(now - 100)}",
        "p:/pricing": f"1 {int(now - 200)}",
        "e:signup": f"2 {int(now - 400)} {int(now - 50)}",
    }
    assert PROFILE_TTL_S - 5 <= sync_redis.ttl(history_key("v1")) <= PROFILE_TTL_S


def test_the_history_is_bounded_per_visitor(redis_url: str, sync_redis: redis.Redis) -> None:
    now = time.time()
    long_tail = "x" * 400
    pages = [view(f"/p{i}/{long_tail}", now - 1000 + i) for i in range(visitor_history.MAX_PAGES + 10)]
    repeats = [view("/p59/" + long_tail, now - 500 + i) for i in range(visitor_history.PAGE_STAMPS + 5)]
    goals = [Conversion(visitor_id="v1", goal=f"{i:03d}" + "g" * 125, ts=now - 900 + i)
             for i in range(visitor_history.MAX_EVENTS + 3)]
    burst = [Conversion(visitor_id="v1", goal="034" + "g" * 125, ts=now - 100 + i)
             for i in range(visitor_history.EVENT_STAMPS + 5)]
    run(record(redis_url, [*pages, *repeats, *goals, *burst]))
    stored = sync_redis.hgetall(history_key("v1"))
    kept_pages = sorted(f for f in stored if f.startswith("p:"))
    kept_events = sorted(f for f in stored if f.startswith("e:"))
    assert len(kept_pages) == visitor_history.MAX_PAGES and len(kept_events) == visitor_history.MAX_EVENTS
    # the least recently seen went: pages p0..p9, goals 000..002
    assert not any(f.startswith(f"p:/p{i}/") for i in range(10) for f in kept_pages)
    assert not any(f.startswith(f"e:{i:03d}") for i in range(3) for f in kept_events)
    assert all(len(f) == 2 + visitor_history.PAGE_CHARS for f in kept_pages)  # cut to 256 characters
    busy_page = stored["p:" + ("/p59/" + long_tail)[: visitor_history.PAGE_CHARS]].split()
    assert busy_page[0] == str(1 + visitor_history.PAGE_STAMPS + 5) and len(busy_page) == 1 + visitor_history.PAGE_STAMPS
    busy_goal = stored["e:034" + "g" * 125].split()
    assert busy_goal[0] == str(1 + visitor_history.EVENT_STAMPS + 5)
    assert len(busy_goal) == 1 + visitor_history.EVENT_STAMPS
    assert sum(len(f) + len(v) for f, v in stored.items()) <= visitor_history.MAX_BYTES
    assert visitor_history.MAX_BYTES < 32_768


def test_nothing_is_kept_without_analytics_consent(redis_url: str, sync_redis: redis.Redis) -> None:
    async def body() -> None:
        client = Redis.from_url(redis_url)
        try:
            taken = await EventRecorder(client).accept([
                {"type": "page_view", "visitor_id": "v1", "page": "/pricing", "analytics": False},
                {"type": "conversion", "visitor_id": "v1", "goal": "signup", "analytics": False},
            ])
            assert taken.dropped == 2
        finally:
            await client.aclose()

    run(body())
    assert sync_redis.exists(history_key("v1")) == 0


def test_the_profile_read_brings_the_history_in_one_round_trip(redis_url: str) -> None:
    now = time.time()
    run(record(redis_url, [view("/pricing", now - 10), Conversion(visitor_id="v1", goal="signup", ts=now - 5)]))

    class Counting:
        """The client, counting what goes to the server: pipelines executed and direct commands."""

        def __init__(self, inner: Redis) -> None:
            self.inner, self.pipelines, self.direct = inner, 0, 0

        def pipeline(self, **kwargs: Any) -> Any:
            pipe = self.inner.pipeline(**kwargs)
            execute = pipe.execute

            async def counted(**options: Any) -> Any:
                self.pipelines += 1
                return await execute(**options)

            pipe.execute = counted  # type: ignore[method-assign]
            return pipe

        def __getattr__(self, name: str) -> Any:
            self.direct += 1
            return getattr(self.inner, name)

    async def body() -> None:
        client = Redis.from_url(redis_url)
        counting = Counting(client)
        try:
            for coalesce in (True, False):
                counting.pipelines = counting.direct = 0
                profile = await RedisProfileStore(counting, coalesce=coalesce).load("v1")  # type: ignore[arg-type]
                assert profile.page_views == 1 and profile.goals == {"signup": 1}
                assert set(profile.history) == {"p:/pricing", "e:signup"}
                assert (counting.pipelines, counting.direct) == (1, 0)
        finally:
            await client.aclose()

    run(body())


def test_erasing_the_visitor_erases_the_history(redis_url: str, sync_redis: redis.Redis) -> None:
    now = time.time()
    run(record(redis_url, [view("/pricing", now, visitor="v1"), view("/pricing", now, visitor="v2")]))

    async def body() -> None:
        client = Redis.from_url(redis_url)
        try:
            erasure = await erase_visitor(client, "v1")
            assert erasure.keys_deleted >= 2  # the profile and the history (and event markers)
        finally:
            await client.aclose()

    run(body())
    assert sync_redis.exists(history_key("v1"), profile_key("v1")) == 0
    assert sync_redis.hgetall(history_key("v2")) == {"p:/pricing": f"1 {int(now)}"}


def test_content_knows_how_many_timestamps_the_store_keeps() -> None:
    assert ninetailed_history.PAGE_STAMPS == visitor_history.PAGE_STAMPS
    assert ninetailed_history.EVENT_STAMPS == visitor_history.EVENT_STAMPS


# -- end to end: events → history → a personalize decision matches a Ninetailed history rule ----------

PRICING_TWICE_THIS_WEEK = {"any": [{"all": [{
    "type": "page", "key": "", "value": "", "count": "2", "operator": "greaterThanInclusive",
    "when": {"operator": "inTheLast", "value": 7, "unit": "days"},
    "conditions": [{"key": {"id": "context_page_path", "category": {"name": "path"}}, "operator": "equal",
                    "value": "/pricing"}],
}]}]}
SIGNED_UP_FEWER_THAN_TWICE_TODAY = {"any": [{"all": [{
    "type": "track", "key": "", "value": "signup", "count": "2", "operator": "lessThan", "when": {"hours": 24},
}]}]}
VIEWED_PRICING_EARLIER = {"any": [{"all": [{
    "type": "page", "key": "", "value": "", "count": "1", "operator": "greaterThanInclusive",
    "conditions": [{"key": {"id": "context_page_url", "category": {"name": "url"}}, "operator": "contains",
                    "value": "pricing"}],
}]}]}


def experience_for(rules: dict[str, Any]) -> Experience:
    condition, problems = rules_condition(rules, validate_condition)
    assert problems == []
    return Experience(
        id="x", key="history-rule", name="history rule", type="personalization", variants=("hero-b",),
        weights=(0.0, 1.0), audience=Audience(id="a", key="a", name="a", condition=condition),
    )


def served(url: str, visitor_id: str, rules: dict[str, Any], page: str = "/home") -> str:
    profile = run(load(url, visitor_id))
    outcome = decide(Visitor(id=visitor_id, page=page), profile, [EntryRequest("hero", (experience_for(rules),))],
                     None, time.time())
    (decision,) = outcome.decisions
    return decision.variant_entry_id


@pytest.mark.parametrize(
    ("rules", "events", "expected"),
    [
        (PRICING_TWICE_THIS_WEEK, [("/pricing", 2), ("/pricing", 1)], "hero-b"),
        (PRICING_TWICE_THIS_WEEK, [("/pricing", 9), ("/pricing", 1)], "hero"),  # one of them too long ago
        (PRICING_TWICE_THIS_WEEK, [("/pricing/", 2), ("/pricing", 1)], "hero"),  # another path
        (SIGNED_UP_FEWER_THAN_TWICE_TODAY, [], "hero-b"),  # never: 0 < 2
        (SIGNED_UP_FEWER_THAN_TWICE_TODAY, [("signup", 0.5)], "hero-b"),
        (SIGNED_UP_FEWER_THAN_TWICE_TODAY, [("signup", 0.5), ("signup", 0.1)], "hero"),
        (SIGNED_UP_FEWER_THAN_TWICE_TODAY, [("signup", 3), ("signup", 0.1)], "hero-b"),  # one was yesterday
        (VIEWED_PRICING_EARLIER, [("https://shop.example/pricing?plan=pro", 30)], "hero-b"),
        (VIEWED_PRICING_EARLIER, [("https://shop.example/docs", 1)], "hero"),
    ],
)
def test_a_decision_matches_a_ninetailed_history_rule(
    redis_url: str, rules: dict[str, Any], events: list[tuple[str, float]], expected: str
) -> None:
    now = time.time()
    run(record(redis_url, [
        Conversion(visitor_id="v1", goal=name, ts=now - days * 86_400) if not name.startswith(("/", "http"))
        else view(name, now - days * 86_400)
        for name, days in events
    ]))
    assert served(redis_url, "v1", rules) == expected


def test_without_history_a_viewed_once_rule_still_reads_the_current_page(redis_url: str) -> None:
    assert served(redis_url, "new", VIEWED_PRICING_EARLIER, page="https://shop.example/pricing") == "hero-b"
    assert served(redis_url, "new", VIEWED_PRICING_EARLIER, page="https://shop.example/home") == "hero"


def test_on_a_cluster_events_write_and_the_profile_read_brings_the_history(valkey_cluster: EmbeddedCluster) -> None:
    """Profile, marker and history share the visitor's slot: one script writes them, one pipeline reads."""
    settings = Settings(redis_url=valkey_cluster.url)

    async def body() -> None:
        client = async_redis(settings)
        try:
            await client.flushall()
            now = time.time()
            visitors = [f"cluster-{i}" for i in range(6)]
            await EventRecorder(client).record([view("/pricing", now - i, visitor=v) for v in visitors for i in (1, 2)])
            store = RedisProfileStore(client)
            profiles = await asyncio.gather(*(store.load(v) for v in visitors))
            assert [p.history for p in profiles] == [{"p:/pricing": f"2 {int(now - 2)} {int(now - 1)}"}] * 6
            assert [p.page_views for p in profiles] == [2] * 6
        finally:
            await client.aclose()

    run(body())
