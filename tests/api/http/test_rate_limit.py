"""Per-API-key rate limits: 429 with Retry-After above the limit, separate per key and route class,
fail-open when Redis is down."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import msgspec
import pytest
from litestar.exceptions import TooManyRequestsException
from litestar.testing import TestClient
from redis.asyncio import Redis

from api.app import create_app
from api.http.ratelimit import RateLimiter
from api.settings import Settings, load_settings

from tests.api.conftest import ADMIN, DELIVERY

OTHER = "another-delivery-key"
BODY = {"visitor": {"id": "rl-visitor", "country": "US"}, "entries": ["heroHome"]}


@pytest.fixture
def limited(settings: Settings) -> Iterator[TestClient]:
    small = msgspec.structs.replace(
        settings, delivery_keys=(DELIVERY, OTHER), rate_limit_delivery_per_s=3, rate_limit_admin_per_s=2
    )
    with TestClient(create_app(small)) as client:
        yield client


def _burst(client: TestClient, n: int, headers: dict[str, str], admin_route: bool = False) -> list:  # noqa: ANN401
    if admin_route:
        return [client.get("/v1/experiences", headers=headers) for _ in range(n)]
    return [client.post("/v1/personalize", json=BODY, headers=headers) for _ in range(n)]


def test_burst_over_the_delivery_limit_gets_429_with_retry_after(limited: TestClient, delivery: dict[str, str]) -> None:
    responses = _burst(limited, 12, delivery)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}
    assert codes.count(200) <= 6  # 3 per one-second window; a burst spans at most two windows
    refused = [r for r in responses if r.status_code == 429]
    assert refused
    retry_after = int(refused[0].headers["retry-after"])
    assert retry_after == 1  # one-second windows
    body = refused[0].json()
    assert "3 requests per 1 s" in body["detail"] and body["extra"]["limit"] == 3


def test_another_key_is_not_affected(limited: TestClient, delivery: dict[str, str]) -> None:
    assert any(r.status_code == 429 for r in _burst(limited, 12, delivery))
    other = {"Authorization": f"Bearer {OTHER}"}
    assert limited.post("/v1/personalize", json=BODY, headers=other).status_code == 200


def test_admin_limit_is_separate(limited: TestClient, admin: dict[str, str]) -> None:
    codes = [r.status_code for r in _burst(limited, 10, admin, admin_route=True)]
    assert 429 in codes and codes.count(200) <= 4  # 2 per second
    # the same admin key on a delivery route counts against the delivery limit, in its own counter
    assert limited.post("/v1/personalize", json=BODY, headers=admin).status_code == 200


def test_unknown_key_is_401_not_counted(limited: TestClient) -> None:
    bad = {"Authorization": "Bearer nope"}
    assert {r.status_code for r in _burst(limited, 8, bad)} == {401}


def test_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(Redis(port=1), {"delivery": 0})  # never contacted
    for _ in range(100):
        asyncio.run(limiter.hit(DELIVERY, "delivery"))
    assert limiter.failed_open == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_redis_down_lets_requests_through() -> None:
    async def run() -> int:
        redis = Redis(port=_closed_port(), socket_connect_timeout=0.2)
        limiter = RateLimiter(redis, {"delivery": 1})
        try:
            for _ in range(5):
                await limiter.hit(DELIVERY, "delivery")  # would be 429 from the 2nd on with Redis up
        finally:
            await redis.aclose()
        return limiter.failed_open

    assert asyncio.run(run()) == 5


def test_limiter_counts_per_window(redis_url: str) -> None:
    now = [1000.25]

    async def run() -> None:
        redis = Redis.from_url(redis_url)
        limiter = RateLimiter(redis, {"admin": 2}, clock=lambda: now[0])
        try:
            await limiter.hit(ADMIN, "admin")
            await limiter.hit(ADMIN, "admin")
            with pytest.raises(TooManyRequestsException) as refused:
                await limiter.hit(ADMIN, "admin")
            assert refused.value.headers == {"Retry-After": "1"}
            now[0] = 1001.0  # next window
            await limiter.hit(ADMIN, "admin")
            keys = [k.decode() async for k in redis.scan_iter("vary:rl:*")]
            assert keys and all(ADMIN not in k for k in keys)
            assert all(0 < ttl <= 2 for ttl in [await redis.ttl(k) for k in keys])
        finally:
            await redis.aclose()

    asyncio.run(run())


def test_settings_from_environment() -> None:
    s = load_settings({"VARY_RATE_LIMIT_DELIVERY_PER_S": "10", "VARY_RATE_LIMIT_ADMIN_PER_S": "0"})
    assert (s.rate_limit_delivery_per_s, s.rate_limit_admin_per_s) == (10, 0)
    assert (Settings().rate_limit_delivery_per_s, Settings().rate_limit_admin_per_s) == (5000, 50)
