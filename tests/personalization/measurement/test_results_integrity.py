"""Issue #17 items 2 and 11 at the aggregator, on a real Valkey: invented goals create no
per-experience state, and one visitor's junk (hundreds of conversions, repeated surveys) is
counted as ``discarded`` instead of moving the results."""

from __future__ import annotations

import asyncio

import msgspec
from redis.asyncio import Redis

from personalization.measurement.aggregation import Aggregator
from personalization.measurement.events import Conversion, Event, Purchase, Survey
from personalization.measurement.goals import GoalPolicy, goal_policy_of, policy_for
from personalization.measurement.results import experiment_results
from personalization.store.keys import agg_key, visitor_key_prefix
from personalization.types import Experience
from tests.personalization.measurement.stream_writes import drain, push
from tests.personalization.measurement.test_aggregation import T0, exposure

POLICY = GoalPolicy(by_experience={"hero": ("signup",)}, default=("purchase",))
HERO = Experience(id="h", key="hero", name="Hero", type="ab_test", variants=("hero-entry-1",),
                  weights=(0.5, 0.5), goals=("signup",))
PROMO = Experience(id="p", key="promo", name="Promo", type="ab_test", variants=("promo-entry-1",),
                   weights=(0.5, 0.5))


def _aggregator(redis: Redis, **kwargs) -> Aggregator:  # noqa: ANN003
    return Aggregator(redis, consumer="c1", exposure_grace_s=0.0, **kwargs)


def _exposures() -> list:
    out = []
    for i in range(20):
        out.append(exposure(f"v{i}", i % 2, T0 + i))
        out.append(exposure(f"v{i}", i % 2, T0 + i, experience="promo", entry="promo-entry"))
    return out


def _clean() -> list[Event]:
    events: list[Event] = [Conversion(visitor_id=f"v{i}", goal="signup", ts=T0 + 100 + i) for i in range(0, 20, 3)]
    events += [Purchase(visitor_id=f"v{i}", order_id=f"o{i}", value=10.0, ts=T0 + 100 + i) for i in range(0, 20, 4)]
    events += [Survey(visitor_id=f"v{i}", metric="nps", score=8, ts=T0 + 200) for i in range(0, 20, 2)]
    return events


def _junk() -> list[Event]:
    """One exposed visitor (a converter already) floods both experiences."""
    events: list[Event] = [Conversion(visitor_id="v0", goal=f"invented-{n}", value=1.0, ts=T0 + 300 + n)
                           for n in range(150)]
    events += [Conversion(visitor_id="v0", goal="signup", value=5.0, ts=T0 + 300) for _ in range(200)]
    events += [Purchase(visitor_id="v0", order_id=f"junk-{n}", value=1000.0, ts=T0 + 300) for n in range(100)]
    events += [Survey(visitor_id="v0", metric="nps", score=0, ts=T0 + 300) for _ in range(100)]
    # A visitor without an exposure counts for no experience, whatever the kind.
    events += [Conversion(visitor_id="stranger", goal="signup", ts=T0 + 300),
               Purchase(visitor_id="stranger", order_id="s1", value=5.0, ts=T0 + 300),
               Survey(visitor_id="stranger", metric="nps", score=0, ts=T0 + 300)]
    return events


def _results(redis_url: str) -> tuple[dict, dict]:
    async def body() -> tuple[dict, dict]:
        redis = Redis.from_url(redis_url)
        hero = msgspec.to_builtins(await experiment_results(redis, HERO))
        promo = msgspec.to_builtins(await experiment_results(redis, PROMO))
        await redis.aclose()
        return hero, promo

    return asyncio.run(body())


def _run(redis_url: str, events: list[Event], **kwargs) -> None:  # noqa: ANN003
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        await push(redis, _exposures(), [])
        aggregator = _aggregator(redis, **kwargs)
        await drain(aggregator)
        await push(redis, [], events)
        await drain(aggregator)
        await redis.aclose()

    asyncio.run(body())


def test_invented_goals_grow_nothing_without_the_policy_they_would(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    """The fault, reproduced with no policy (the old behaviour), then the same traffic with one."""
    invented = [Conversion(visitor_id="v1", goal=f"g{n}", ts=T0 + 300) for n in range(60)]
    _run(redis_url, invented)
    assert len(sync_redis.smembers(agg_key("hero", "goals"))) == 60  # one new section per name
    sync_redis.flushall()

    _run(redis_url, invented + _clean(), goal_policy=lambda: POLICY)
    assert sync_redis.smembers(agg_key("hero", "goals")) == {"signup"}
    assert sync_redis.smembers(agg_key("promo", "goals")) == {"purchase"}  # the space's goals
    everything = " ".join(f for k in sync_redis.scan_iter("vary:agg:*") if sync_redis.type(k) == "hash"
                          for f in sync_redis.hkeys(k))
    assert "g1" not in everything
    all_hero = sync_redis.hgetall(agg_key("hero", "all"))
    assert all_hero["discarded:goal"] == "60"
    assert sync_redis.hgetall(agg_key("promo", "all"))["discarded:goal"] == "67"  # + 7 clean signups
    hero, _ = _results(redis_url)
    assert set(hero["goals"]) == {"signup"} and hero["discarded"] == {"goal": 60}


def test_pre_exposure_values_of_invented_goals_are_not_kept(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    """A value sent before any exposure (CUPED's covariate) is kept only for a goal some experience
    counts, and only copied into experiences that count it."""
    before = [Conversion(visitor_id="v1", goal=name, value=3.0, ts=T0 - 50) for name in ("made-up", "signup", "purchase")]

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        aggregator = _aggregator(redis, goal_policy=lambda: POLICY)
        await push(redis, [], before)
        await drain(aggregator)
        await push(redis, _exposures(), [])
        await drain(aggregator)
        await redis.aclose()

    asyncio.run(body())
    # value totals and conversion counts (n:<goal>, CUPED on conversions) of the goals that count
    assert set(sync_redis.hkeys(visitor_key_prefix("v1") + "t")) == {"signup", "purchase", "n:signup", "n:purchase"}
    hero = sync_redis.hkeys(agg_key("hero", "all"))
    promo = sync_redis.hkeys(agg_key("promo", "all"))
    assert any(f.endswith("xsum:signup") for f in hero) and not any("purchase" in f for f in hero)
    assert any(f.endswith("xsum:purchase") for f in promo) and not any("signup" in f for f in promo)
    assert not any("made-up" in f for f in hero + promo)


def test_one_visitors_junk_barely_moves_the_results(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    kwargs = {"goal_policy": lambda: POLICY, "max_conversions_per_minute": 10}
    _run(redis_url, _clean(), **kwargs)
    clean_hero, clean_promo = _results(redis_url)
    sync_redis.flushall()
    _run(redis_url, _clean() + _junk(), **kwargs)
    hero, promo = _results(redis_url)

    for clean, flooded in ((clean_hero, hero), (clean_promo, promo)):
        assert set(flooded["goals"]) == set(clean["goals"])
        for goal, result in flooded["goals"].items():
            for a, b in zip(result["variants"], clean["goals"][goal]["variants"], strict=True):
                assert (a["exposures"], a["conversions"], a["rate"]) == (b["exposures"], b["conversions"], b["rate"])
        assert flooded["visitors"] == clean["visitors"]
        for v, cx in flooded["cx"].items():  # NPS: v0's one answer of the day, not 100
            assert cx["nps"] == clean["cx"][v]["nps"]
    # v0's 200 signups and 100 orders count at most 10 (one minute of arrival); its 100 NPS answers once.
    signups = sum(hero["daily"][d]["conversions"]["signup"][0] for d in hero["daily"])
    clean_signups = sum(clean_hero["daily"][d]["conversions"]["signup"][0] for d in clean_hero["daily"])
    assert signups - clean_signups <= 10
    assert hero["discarded"]["goal"] == 150
    # 302 conversions and orders of v0 in (at most two) minutes of arrival: 10 a minute count.
    assert hero["discarded"]["rate"] >= 282 and hero["discarded"]["survey_repeat"] == 100
    # promo counts purchase only: signup is not its goal (7 clean signups were discarded too).
    assert promo["discarded"]["goal"] == clean_promo["discarded"]["goal"] + 150 + 200
    assert promo["discarded"]["rate"] >= 81 and promo["discarded"]["survey_repeat"] == 100
    assert clean_hero["discarded"] == {} and set(clean_promo["discarded"]) == {"goal"}


def test_goal_policy_of_content() -> None:
    class Snap:
        def __init__(self) -> None:
            self.version = "v-test-1"
            self.experiences = {"hero": HERO, "promo": PROMO}
            self.goals = ("lead", "lead", "purchase")

    policy = goal_policy_of(Snap())
    assert policy.allowed("hero") == ("signup",) and policy.allowed("promo") == ("lead", "purchase")
    assert policy.allowed("not-in-content") == ("lead", "purchase")
    assert policy_for("v-test-1", [], None)[0] is policy  # cached per content version
    assert goal_policy_of(None).allowed("anything") == ("purchase", "signup")
