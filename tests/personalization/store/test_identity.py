"""Linking ids to a person (personalization/store/identity.py): the token, the link, the merge rules,
idempotence and order independence, the bound on ids, and the merged profile in two round trips."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from personalization.store.identity import (
    IdentityRefused,
    link,
    linked_ids,
    person_of_user,
    resolve,
    sign_identity,
    verify_identity,
)
from personalization.store.keys import (
    history_key,
    profile_key,
    traits_key,
    visitor_key_prefix,
)
from personalization.store.profiles import RedisProfileStore

SECRET = "s3cret-identity-key-of-the-customer-backend"
TTL = 86_400


def test_token_round_trip_and_every_refusal_names_its_field() -> None:
    token = sign_identity(SECRET, "cust-42", 2_000_000_000)
    verify_identity(SECRET, "cust-42", token, now=1_900_000_000)
    cases = [
        (None, "cust-42", token, 0, "user_id"),
        (SECRET, "cust-42", None, 0, "identity_token"),
        (SECRET, "cust-42", "nonsense", 0, "identity_token"),
        (SECRET, "cust-43", token, 0, "identity_token"),  # another user's token
        (SECRET, "cust-42", sign_identity("other-secret", "cust-42", 2_000_000_000), 0, "identity_token"),
        (SECRET, "cust-42", token, 2_000_000_001, "identity_token"),  # expired
        (SECRET, "cust-42", "2100000000." + token.split(".")[1], 0, "identity_token"),  # expiry changed
    ]
    for secret, user, presented, now, field in cases:
        with pytest.raises(IdentityRefused) as refused:
            verify_identity(secret, user, presented, now=now)
        assert refused.value.field == field, (user, presented)


async def _write_id(redis: Redis, visitor_id: str, profile: dict[str, str], traits: dict[str, str]) -> None:
    await redis.hset(profile_key(visitor_id), mapping=profile)
    if traits:
        await redis.hset(traits_key(visitor_id), mapping=traits)


A_PROFILE = {"visits": "3", "page_views": "7", "first_seen": "100", "last_seen": "500", "ch:web": "1",
             "g:signup": "1", "conversions": "1", "a:hero": "1", "a:promo": "0", "f:hero": "20000 2 2857 2 2"}
B_PROFILE = {"visits": "2", "page_views": "1", "first_seen": "300", "last_seen": "900", "ch:ios": "1",
             "a:hero": "0", "a:banner": "1", "f:hero": "20000 1 2857 1 1"}
A_TRAITS = {"plan": '"free"', "city": '"Lyon"'}
B_TRAITS = {"plan": '"pro"', "lang": '"fr"'}


STATE = {
    "anon-a": {"x": {"hero": "1|150|9999|web|s1"}, "xf": {"hero|c:buy": "1", "o:ord1": "1"},
               "t": {"buy": "10", "n:buy": "1"}, "cx": {"seg": "s1", "seg_ts": "150", "xch": "web", "ch": "web",
                                                         "ts": "160"}},
    "anon-b": {"x": {"hero": "0|400|9999|ios|s2", "banner": "1|420|9999|ios|s2"},
               "xf": {"hero|k:cta": "1", "banner|c:buy": "1"}, "t": {"buy": "5", "n:buy": "99"},
               "cx": {"seg": "s2", "seg_ts": "400", "xch": "ios", "ch": "ios", "ts": "950"}},
}


async def _person_after(redis: Redis, order: list[str]) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    await redis.flushall()
    await _write_id(redis, "anon-a", A_PROFILE, A_TRAITS)
    await _write_id(redis, "anon-b", B_PROFILE, B_TRAITS)
    for visitor_id, hashes in STATE.items():
        for suffix, fields in hashes.items():
            await redis.hset(visitor_key_prefix(visitor_id) + suffix, mapping=fields)
    for visitor_id in order:
        await link(redis, visitor_id, "cust-1", ttl_s=TTL)
    person = await person_of_user(redis, "cust-1", create=False)
    assert person is not None
    profile = await redis.hgetall(profile_key(person))
    traits = await redis.hgetall(traits_key(person))
    for suffix in ("x", "xf", "t", "cx"):  # the aggregation state, in the same comparison
        profile.update({f"{suffix}/".encode() + k: v for k, v in (await state(redis, person, suffix)).items()})
    return profile, traits


async def state(redis: Redis, visitor_id: str, suffix: str) -> dict[bytes, bytes]:
    return await redis.hgetall(visitor_key_prefix(visitor_id) + suffix)


def test_merge_rules_are_order_independent_and_idempotent(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        ab_profile, ab_traits = await _person_after(redis, ["anon-a", "anon-b"])
        ba_profile, ba_traits = await _person_after(redis, ["anon-b", "anon-a", "anon-b", "anon-a"])
        assert ab_profile == ba_profile and ab_traits == ba_traits
        assert ab_profile[b"visits"] == b"5" and ab_profile[b"page_views"] == b"8"  # counters add
        assert ab_profile[b"g:signup"] == b"1" and ab_profile[b"conversions"] == b"1"
        assert ab_profile[b"first_seen"] == b"100" and ab_profile[b"last_seen"] == b"900"
        assert ab_profile[b"ch:web"] == ab_profile[b"ch:ios"] == b"1"  # channels union
        # the first-seen id (anon-a, first seen at 100) keeps its assignment; others are copied
        assert ab_profile[b"a:hero"] == b"1" and ab_profile[b"a:promo"] == b"0" and ab_profile[b"a:banner"] == b"1"
        assert ab_profile[b"f:hero"] == b"20000 3 2857 3 3"  # frequency counters add in the same day/week
        # the last-seen id (anon-b, last seen at 900) wins a trait both have; the others are kept
        assert ab_traits == {b"plan": b'"pro"', b"city": b'"Lyon"', b"lang": b'"fr"'}
        assert ab_profile[b"user"] == b"cust-1"
        # aggregation state: the earliest exposure per experience wins and its flags follow it
        person_state = {k.decode(): v.decode() for k, v in ab_profile.items() if b"/" in k}
        assert person_state == {
            "x/hero": "1|150|9999|web|s1", "x/banner": "1|420|9999|ios|s2",
            "xf/hero|c:buy": "1", "xf/banner|c:buy": "1", "xf/o:ord1": "1",  # B's hero|k:cta went with its state
            "t/buy": "15", "t/n:buy": "100",  # totals add, conversions capped as outcome.lua caps them
            "cx/seg": "s1", "cx/seg_ts": "150", "cx/xch": "web", "cx/ch": "ios", "cx/ts": "950",
        }
        person = await person_of_user(redis, "cust-1", create=False)
        assert await resolve(redis, ["anon-a", "anon-b", "anon-c"]) == {"anon-a": person, "anon-b": person}
        assert await linked_ids(redis, person) == (["anon-a", "anon-b"], "cust-1")
        await redis.aclose()

    asyncio.run(body())


def test_a_person_links_a_bounded_number_of_ids(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        for i in range(3):
            await link(redis, f"dev-{i}", "cust-9", ttl_s=TTL, max_ids=3)
        await link(redis, "dev-1", "cust-9", ttl_s=TTL, max_ids=3)  # a known id again: fine
        with pytest.raises(IdentityRefused) as refused:
            await link(redis, "dev-3", "cust-9", ttl_s=TTL, max_ids=3)
        assert refused.value.field == "user_id" and "3 ids" in refused.value.detail
        assert await resolve(redis, ["dev-3"]) == {}
        await redis.aclose()

    asyncio.run(body())


def test_a_decision_reads_the_merged_profile_in_two_round_trips(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        await _write_id(redis, "anon-a", A_PROFILE, A_TRAITS)
        await _write_id(redis, "anon-b", B_PROFILE, B_TRAITS)
        await redis.hset(history_key("anon-b"), "p:/x", "1 5")
        await link(redis, "anon-a", "cust-2", ttl_s=TTL)
        await link(redis, "anon-b", "cust-2", ttl_s=TTL)
        person = await person_of_user(redis, "cust-2", create=False)
        round_trips = 0
        original = redis.pipeline

        def counting(*args: object, **kwargs: object) -> object:
            nonlocal round_trips
            round_trips += 1
            return original(*args, **kwargs)

        redis.pipeline = counting  # type: ignore[method-assign]
        for coalesce in (False, True):
            round_trips = 0
            store = RedisProfileStore(redis, coalesce=coalesce)
            profile = await store.load("anon-b")
            assert round_trips == 2, coalesce
            assert getattr(profile, "person", None) == person
            assert profile.visits == 5 and profile.channels == ("ios", "web")
            assert profile.assignments == {"hero": 1, "promo": 0, "banner": 1}
            assert profile.traits == {"plan": "pro", "city": "Lyon", "lang": "fr"}
            assert profile.history == {"p:/x": "1 5"}  # the current id's history
            round_trips = 0
            unlinked = await store.load("anon-z")
            assert round_trips == 1 and getattr(unlinked, "person", None) is None
        await redis.aclose()

    asyncio.run(body())
