"""Leased rate-limit budgets: a worker asks Redis once per slice, and workers together never admit
more than the limit (real Valkey; two limiters stand for two workers)."""

from __future__ import annotations

import asyncio

import pytest
from litestar.exceptions import TooManyRequestsException
from redis.asyncio import Redis

from api.http.ratelimit import RateLimiter, key_id

from tests.api.conftest import DELIVERY


def test_one_round_trip_per_slice_not_per_request(redis_url: str) -> None:
    async def run() -> tuple[int, int]:
        redis = Redis.from_url(redis_url)
        limiter = RateLimiter(redis, {"delivery": 5000}, clock=lambda: 2000.5)
        try:
            for _ in range(200):
                await limiter.hit(DELIVERY, "delivery")
            # the next slice may be on its way (claimed in the background): let it land
            await asyncio.gather(*(t for t in asyncio.all_tasks() if t.get_name() == "vary-rate-limit-claim"))
            counted = int(await redis.get(f"vary:rl:{{{key_id(DELIVERY)}}}:delivery:2000") or 0)
        finally:
            await redis.aclose()
        return limiter.claims, counted

    claims, counted = asyncio.run(run())
    assert 4 <= claims <= 5  # slices of 50 (1 % of 5,000); the next one is claimed when half is spent
    assert counted == 50 * claims  # what Redis holds is what this worker took


def test_two_workers_together_never_exceed_the_limit(redis_url: str) -> None:
    async def run() -> tuple[int, int, dict[str, str]]:
        redis = Redis.from_url(redis_url)
        workers = [RateLimiter(redis, {"delivery": 1000}, clock=lambda: 3000.25) for _ in range(2)]
        admitted = refused = 0
        retry_after: dict[str, str] = {}
        try:
            for i in range(1600):  # interleaved, and concurrently within each worker
                results = await asyncio.gather(
                    *(w.hit(DELIVERY, "delivery") for w in (workers[i % 2], workers[i % 2])), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, TooManyRequestsException):
                        refused += 1
                        retry_after = result.headers or {}
                    elif result is None:
                        admitted += 1
                    else:
                        raise result
        finally:
            await redis.aclose()
        return admitted, refused, retry_after

    admitted, refused, retry_after = asyncio.run(run())
    assert 1000 - 2 * 15 <= admitted <= 1000  # at most 1.5 unspent slices (of 10) per worker are lost
    assert admitted + refused == 3200
    assert retry_after == {"Retry-After": "1"}


def test_a_spent_window_is_refused_locally_until_it_ends(redis_url: str) -> None:
    now = [5000.1]

    async def run() -> int:
        redis = Redis.from_url(redis_url)
        limiter = RateLimiter(redis, {"admin": 3}, clock=lambda: now[0])
        try:
            for _ in range(3):
                await limiter.hit(DELIVERY, "admin")
            for _ in range(20):
                with pytest.raises(TooManyRequestsException):
                    await limiter.hit(DELIVERY, "admin")
            claims_in_spent_window = limiter.claims
            now[0] = 5001.0
            await limiter.hit(DELIVERY, "admin")  # a new window asks Redis again
            assert limiter.claims == claims_in_spent_window + 1
        finally:
            await redis.aclose()
        return claims_in_spent_window

    assert asyncio.run(run()) == 4  # three grants of one, then the refusal; no more asking


def test_on_a_stalled_redis_only_the_claims_first_deadline_is_waited(redis_url: str) -> None:
    """While one claim hangs on a paused Redis (until its socket timeout), the requests arriving
    after its deadline has passed are let through at once instead of each waiting a deadline."""

    async def run() -> None:
        redis = Redis.from_url(redis_url, socket_timeout=1.0)
        admin = Redis.from_url(redis_url)
        limiter = RateLimiter(redis, {"delivery": 100}, deadline_s=0.05, clock=lambda: 4000.5)
        try:
            await admin.execute_command("CLIENT", "PAUSE", "600", "ALL")
            first = asyncio.ensure_future(limiter.hit(DELIVERY, "delivery"))
            await asyncio.sleep(0)
            assert not first.done()  # the first request waits for the claim, up to the deadline
            await first
            assert limiter.failed_open == 1
            later = [asyncio.ensure_future(limiter.hit(DELIVERY, "delivery")) for _ in range(10)]
            await asyncio.sleep(0)
            assert all(task.done() and task.exception() is None for task in later)  # no second wait
            assert limiter.failed_open == 11 and limiter.claims == 1
        finally:
            await asyncio.sleep(0.7)  # the pause is over and the claim has answered
            await redis.aclose()
            await admin.aclose()

    asyncio.run(run())
