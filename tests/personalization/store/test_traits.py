"""Traits that persist: ``identify`` events and personalize requests remembered in the visitor's
traits hash, bounded, consented, erased, and matched by later decisions without being resent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import pytest
from redis.asyncio import Redis

from personalization.decision.scoring import ActiveModel
from personalization.errors import RejectedBatch
from personalization.measurement.events import Identify
from personalization.measurement.recorder import EventRecorder
from personalization.service import Personalizer
from personalization.store.erasure import erase_visitor
from personalization.store.keys import traits_key, visitor_key_prefix
from personalization.store.profiles import RedisProfileStore
from personalization.store.traits import (
    MAX_TRAIT_BYTES,
    MAX_TRAITS,
    TraitsOverBound,
    _encoded,
    _size,
    _total_size,
    check_merge,
    merged_changes,
)
from personalization.types import Audience, Consent, Experience, Exposure, Visitor

PRO = Audience(id="a1", key="pro", name="Pro plan", condition={"traits.plan": "pro"})
HERO = Experience(
    id="e1", key="hero", name="Hero", type="personalization", variants=("heroPro",), weights=(0.0, 1.0),
    audience=PRO,
)


class Catalog:
    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]:
        return (HERO,) if entry_id == "hero" else ()


class Collected:
    def __init__(self) -> None:
        self.exposures: list[Exposure] = []

    def submit(self, exposures: Iterable[Exposure], assignments: Iterable[tuple[str, str, int]] = ()) -> None:
        self.exposures.extend(exposures)


def identify(visitor: str, traits: dict[str, object], event_id: str, analytics: bool = True) -> dict[str, object]:
    return {"type": "identify", "visitor_id": visitor, "traits": traits, "event_id": event_id, "analytics": analytics}


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def served(personalizer: Personalizer, visitor: Visitor) -> str:
    return (await personalizer.personalize(visitor, ["hero"], Catalog())).outcome.decisions[0].variant_entry_id


def test_identify_then_personalize_without_traits_matches_the_trait_audience(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            personalizer = Personalizer(RedisProfileStore(redis), ActiveModel(), Collected())
            assert await served(personalizer, Visitor(id="v1")) == "hero"  # not identified yet
            taken = await EventRecorder(redis).accept([identify("v1", {"plan": "pro", "seats": 5}, "i1")])
            assert taken.recorded.accepted == 1
            profile = await RedisProfileStore(redis).load("v1")
            assert profile.traits == {"plan": "pro", "seats": 5.0}
            assert await served(personalizer, Visitor(id="v1")) == "heroPro"
            # the request's traits override the stored ones for that call only
            assert await served(personalizer, Visitor(id="v1", traits={"plan": "free"}, consent=Consent(analytics=False))) == "hero"
            assert await served(personalizer, Visitor(id="v1")) == "heroPro"
            # latest wins; null clears
            await EventRecorder(redis).accept([identify("v1", {"plan": "team"}, "i2"), identify("v1", {"seats": None}, "i3")])
            assert (await RedisProfileStore(redis).load("v1")).traits == {"plan": "team"}
            # a retried event id is not merged again (the marker stops the whole profile half)
            await EventRecorder(redis).accept([identify("v1", {"plan": "pro"}, "i1")])
            assert (await RedisProfileStore(redis).load("v1")).traits == {"plan": "team"}
        finally:
            await redis.aclose()

    run(body())


def test_traits_sent_on_personalize_are_remembered_with_consent_only(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            store = RedisProfileStore(redis)
            personalizer = Personalizer(store, ActiveModel(), Collected())
            assert await served(personalizer, Visitor(id="v2", traits={"plan": "pro"})) == "heroPro"
            await asyncio.sleep(0.05)  # the write is not awaited by the decision
            assert (await store.load("v2")).traits == {"plan": "pro"}
            assert await served(personalizer, Visitor(id="v2")) == "heroPro"

            no_analytics = Visitor(id="v3", traits={"plan": "pro"}, consent=Consent(analytics=False))
            assert await served(personalizer, no_analytics) == "heroPro"
            previewed = await personalizer.personalize(Visitor(id="v4", traits={"plan": "pro"}), ["hero"], Catalog(), record=False)
            assert previewed.outcome.decisions[0].variant_entry_id == "heroPro"
            taken = await EventRecorder(redis).accept([identify("v5", {"plan": "pro"}, "i5", analytics=False)])
            assert taken.dropped == 1
            await asyncio.sleep(0.05)
            for visitor in ("v3", "v4", "v5"):
                assert await redis.exists(traits_key(visitor)) == 0
        finally:
            await redis.aclose()

    run(body())


def test_bounds_refuse_with_the_trait_named(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            recorder = EventRecorder(redis)
            many = {f"t{i:03d}": i for i in range(MAX_TRAITS)}
            assert (await recorder.accept([identify("v1", dict(list(many.items())[:60]), "a")])).recorded.accepted == 1
            assert (await recorder.accept([identify("v1", dict(list(many.items())[60:]), "b")])).recorded.accepted == 1
            with pytest.raises(RejectedBatch) as refused:
                await recorder.accept([identify("v1", {"t000": 1, "extra": "x", "more": "y"}, "c")])
            assert [p.key for p in refused.value.problems] == ["events[0].traits.extra"]
            assert "at most 100 traits" in refused.value.problems[0].message
            # one good event and one over the bound: the good one is taken, the other named
            taken = await recorder.accept([identify("v2", {"plan": "pro"}, "d"),
                                           identify("v2", {f"long{i}": "y" * 1000 for i in range(9)}, "e")])
            assert taken.recorded.accepted == 1
            assert [(r.index, r.field) for r in taken.rejected] == [(1, "traits.long8")]  # 9 + 8·1007 ≤ 8192 < 9 + 9·1007
            assert "8192 bytes" in taken.rejected[0].message
            stored = await RedisProfileStore(redis).load("v1")
            assert len(stored.traits) == MAX_TRAITS and "extra" not in stored.traits

            personalizer = Personalizer(RedisProfileStore(redis), ActiveModel(), Collected())
            with pytest.raises(TraitsOverBound) as over:
                await served(personalizer, Visitor(id="v1", traits={"new_one": True}))
            assert over.value.problems[0].key == "visitor.traits.new_one"
            # within the bound a request may replace stored values
            assert await served(personalizer, Visitor(id="v1", traits={"t001": 2})) == "hero"
            await asyncio.sleep(0.05)
            assert (await RedisProfileStore(redis).load("v1")).traits["t001"] == 2
        finally:
            await redis.aclose()

    run(body())


def test_the_lua_merge_keeps_the_bound_when_the_api_check_is_bypassed(redis_url: str) -> None:
    """A replayed or racing event the API did not check cannot pass the bound: the merge is skipped."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            store = RedisProfileStore(redis)
            store.remember_traits("v1", {f"t{i}": i for i in range(MAX_TRAITS)})
            await asyncio.sleep(0.05)
            store.remember_traits("v1", {"one_more": 1})
            store.remember_traits("v2", {"huge": "z" * (MAX_TRAIT_BYTES + 1)})
            await asyncio.sleep(0.05)
            assert len((await store.load("v1")).traits) == MAX_TRAITS
            assert "one_more" not in (await store.load("v1")).traits
            assert await redis.exists(traits_key("v2")) == 0
            # the event path: recorded (counted) but the traits not merged
            await EventRecorder(redis).record([Identify(visitor_id="v1", event_id="z", traits={"sneaky": 1.0})])
            profile = await store.load("v1")
            assert "sneaky" not in profile.traits and profile.visits == 1
        finally:
            await redis.aclose()

    run(body())


def test_erasure_removes_the_traits(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await EventRecorder(redis).accept([identify("v1", {"plan": "pro"}, "i1"), identify("v2", {"plan": "pro"}, "i2")])
            assert traits_key("v1").startswith(visitor_key_prefix("v1"))
            assert await redis.exists(traits_key("v1")) == 1
            await erase_visitor(redis, "v1")
            assert await redis.exists(traits_key("v1")) == 0
            assert (await RedisProfileStore(redis).load("v1")).traits == {}
            assert (await RedisProfileStore(redis).load("v2")).traits == {"plan": "pro"}
        finally:
            await redis.aclose()

    run(body())


def test_merge_rules() -> None:
    assert check_merge({"a": 1.0}, {"a": 2.0, "b": None}) == {"a": 2.0}
    assert merged_changes({"a": 1.0, "b": "x"}, {"a": 1.0, "b": None, "c": None, "d": True}) == {"b": None, "d": True}
    with pytest.raises(TraitsOverBound) as over:
        check_merge({f"s{i}": 1.0 for i in range(99)}, {"s0": 2.0, "n1": 1.0, "n2": 1.0, "n3": 1.0})
    assert over.value.trait == "n2"


@pytest.mark.parametrize(
    "traits",
    [
        {},
        {"plan": "plus"},
        {"plan": "plus", "newsletter": True, "lifetime_value": 320.5, "n": 3, "gone": None},
        {"größe": "groß", "名前": ["a", "ü", 1, 2.5e-7], "nested": {"k": [True, None, {"x": "\u2028\"\\"}]}},
        {"emoji \U0001f600": "\U0001f600" * 3, "": "", "ctrl": "\x00\t\n"},
    ],
)
def test_the_total_size_is_each_traits_size_summed(traits: dict[str, object]) -> None:
    """check_merge's one-encode total (issue 22) equals Σ name bytes + JSON value bytes per trait."""
    assert _total_size(traits) == sum(_size(name, _encoded(value)) for name, value in traits.items())  # type: ignore[arg-type]


def test_the_byte_bound_is_exact_with_multibyte_names() -> None:
    name = "ä" * 10  # 20 UTF-8 bytes
    room = MAX_TRAIT_BYTES - 20 - 2  # the value's JSON is its text in quotes
    assert check_merge({}, {name: "x" * room}) == {name: "x" * room}
    with pytest.raises(TraitsOverBound) as over:
        check_merge({"a": 1.0}, {name: "x" * room})
    assert over.value.trait == name and f"({MAX_TRAIT_BYTES + 4} with these)" in over.value.detail


def test_changes_with_nothing_stored_are_every_trait_but_a_clear() -> None:
    incoming = {"a": 1.0, "b": None, "c": ["x"], "d": False}
    assert merged_changes({}, incoming) == {"a": 1.0, "c": ["x"], "d": False}
    assert merged_changes({"z": 1.0}, incoming) == {"a": 1.0, "c": ["x"], "d": False}


def test_merges_queued_in_one_loop_turn_all_land_even_after_a_script_flush(redis_url: str) -> None:
    """Personalize requests' trait merges go out as one pipeline per loop turn (issue 22); a server
    that lost its scripts (restart, failover, SCRIPT FLUSH) gets the script loaded and every merge
    sent again, none lost, none applied twice."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            store = RedisProfileStore(redis)
            for i in range(60):
                store.remember_traits(f"v{i}", {"plan": "plus", "n": i})
            await asyncio.sleep(0.1)
            await redis.script_flush()
            for i in range(60):
                store.remember_traits(f"v{i}", {"n": i + 1000})
            await asyncio.sleep(0.1)
            for i in range(60):
                assert (await store.load(f"v{i}")).traits == {"plan": "plus", "n": i + 1000}
        finally:
            await redis.aclose()

    run(body())


def test_a_turns_merges_are_one_script_call_with_each_visitors_own_result(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 22: one EVALSHA carries every merge of a loop turn; each visitor still gets the merge
    REMEMBER_LUA would apply on its own: over a bound refused, ``null`` clearing, a key of the wrong
    type failing (and logged) without stopping the merges after it, the TTL set."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await redis.hset(traits_key("full"), mapping={f"t{i}": "1" for i in range(MAX_TRAITS)})
            await redis.hset(traits_key("clear"), mapping={"plan": '"pro"', "seen": "true"})
            await redis.set(traits_key("broken"), "not a hash")
            await redis.config_resetstat()
            store = RedisProfileStore(redis, ttl_s=600)
            store.remember_traits("full", {"one_more": 1})
            store.remember_traits("clear", {"plan": None, "n": 2})
            store.remember_traits("broken", {"plan": "pro"})
            store.remember_traits("huge", {"big": "z" * (MAX_TRAIT_BYTES + 1)})
            store.remember_traits("new", {"plan": "plus", "tags": ["a", "b"], "ok": True})
            await asyncio.sleep(0.1)
            stats = await redis.info("commandstats")
            assert stats["cmdstat_evalsha"]["calls"] == 1
            assert "one_more" not in (await store.load("full")).traits
            assert (await store.load("clear")).traits == {"seen": True, "n": 2}
            assert await redis.exists(traits_key("huge")) == 0
            assert (await store.load("new")).traits == {"plan": "plus", "tags": ["a", "b"], "ok": True}
            assert 0 < await redis.ttl(traits_key("new")) <= 600
            assert await redis.get(traits_key("broken")) == b"not a hash"
        finally:
            await redis.aclose()

    with caplog.at_level("WARNING", logger="vary.profiles"):
        run(body())
    assert [r.getMessage() for r in caplog.records] == ["remembering traits failed for 1 visitors (ResponseError)"]


def test_a_merge_with_redis_down_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def body() -> None:
        redis = Redis(port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
        try:
            store = RedisProfileStore(redis)
            store.remember_traits("v1", {"plan": "pro"})
            for _ in range(250):
                await asyncio.sleep(0.02)
                if not store._tasks:
                    break
        finally:
            await redis.aclose()

    with caplog.at_level("WARNING", logger="vary.profiles"):
        run(body())
    assert [r.getMessage() for r in caplog.records] == ["remembering traits failed (ConnectionError)"]


def test_merges_on_a_cluster_are_one_call_each(valkey_cluster: object) -> None:
    """A cluster cannot run one script over keys in several slots: there each merge is its own call."""
    from api.redis_client import async_redis
    from api.settings import Settings

    async def body() -> None:
        redis = async_redis(Settings(redis_url=valkey_cluster.url))  # type: ignore[attr-defined]
        try:
            ids = [f"cluster-traits-{i}" for i in range(6)]  # spread over the nodes' slots
            await asyncio.gather(*(redis.delete(traits_key(visitor)) for visitor in ids))
            store = RedisProfileStore(redis)
            for i, visitor in enumerate(ids):
                store.remember_traits(visitor, {"plan": "pro", "n": i})
            # The merges are sent in the background, one call each; on a loaded machine the cluster's
            # first calls (slot map, script loads on each node) took longer than a fixed 0.2 s once.
            deadline = time.monotonic() + 10.0
            while True:
                stored = [(await store.load(visitor)).traits for visitor in ids]
                if stored == [{"plan": "pro", "n": i} for i in range(len(ids))] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert stored == [{"plan": "pro", "n": i} for i in range(len(ids))]
        finally:
            await redis.aclose()

    run(body())
