"""The rate limiter across a Redis outage and restart (issue 22's note on tests/reliability/test_redis_outage.py):
nothing under the limit is refused after Redis comes back — no "spent" flag sticks and a claim that answers late
is charged to its own window — and above the limit the first window after the restart refuses what is over."""

from __future__ import annotations

import asyncio

import pytest
from litestar.exceptions import TooManyRequestsException

from api.http.ratelimit import RateLimiter

from tests.api.conftest import DELIVERY


class _FlakyRedisLimiter(RateLimiter):
    """A limiter whose Redis counters live in a dict, and whose Redis is down while ``down`` is set."""

    def __init__(self, limit: int, now: list[float]) -> None:
        super().__init__(None, {"delivery": limit}, clock=lambda: now[0])  # type: ignore[arg-type]
        self.down = False
        #: A stalled Redis (claims hang until it is back) rather than a refused connection.
        self.stalls = False
        self.back = asyncio.Event()
        self.counters: dict[str, int] = {}

    async def _incr(self, counter: str, amount: int) -> int:
        await asyncio.sleep(0)
        if self.down and self.stalls:
            await self.back.wait()  # sent before the restart, answered after it
        elif self.down:
            raise ConnectionError("Connection refused")
        self.counters[counter] = self.counters.get(counter, 0) + amount
        return self.counters[counter]


async def _send(limiter: RateLimiter, n: int) -> tuple[int, int]:
    results = await asyncio.gather(*(limiter.hit(DELIVERY, "delivery") for _ in range(n)), return_exceptions=True)
    refused = sum(isinstance(r, TooManyRequestsException) for r in results)
    assert all(r is None or isinstance(r, TooManyRequestsException) for r in results), results
    return n - refused, refused


@pytest.mark.parametrize("stalls", [False, True], ids=["refused", "stalled"])
def test_after_a_restart_nothing_under_the_limit_is_refused(stalls: bool) -> None:
    now = [7000.0]

    async def run() -> list[int]:
        limiter = _FlakyRedisLimiter(5000, now)
        limiter.stalls = stalls
        refused: list[int] = []
        for second in range(12):  # 4,000 requests a second, in bursts of 100; Redis down for seconds 3-6
            limiter.down = 3 <= second <= 6
            if second == 7:
                limiter.back.set()
            for burst in range(40):
                now[0] = 7000.0 + second + burst / 40
                refused.append((await _send(limiter, 100))[1])
        await asyncio.sleep(0.01)
        return refused

    assert sum(asyncio.run(run())) == 0


def test_above_the_limit_the_first_window_after_a_restart_refuses_only_the_excess() -> None:
    now = [8000.0]

    async def run() -> tuple[int, int]:
        limiter = _FlakyRedisLimiter(5000, now)
        limiter.down = True
        admitted_down, refused_down = await _send(limiter, 6000)  # fail-open: all through while Redis is down
        assert refused_down == 0 and admitted_down == 6000
        limiter.down = False
        now[0] = 8001.0
        admitted = refused = 0
        for burst in range(52):  # 5,200 in the first window after the restart
            now[0] = 8001.0 + burst / 60
            a, r = await _send(limiter, 100)
            admitted, refused = admitted + a, refused + r
        return admitted, refused

    admitted, refused = asyncio.run(run())
    assert 5000 - 75 <= admitted <= 5000  # at most 1.5 unspent slices of 50 lost
    assert refused == 5200 - admitted
