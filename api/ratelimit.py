"""Per-API-key rate limits, counted in Redis so every worker and instance shares them.

A fixed one-second window per key and route class: ``INCR vary:rl:{<key hash>}:<route>:<second>``
and ``EXPIRE`` in one pipelined transaction (one round trip). Above the limit the request is refused
with 429, a ``Retry-After`` header (seconds until the window ends, at least 1) and a detail naming
the limit. The key is never stored: the counter is named by the first 16 hex of its SHA-256.

The limit depends on the *route* class, not on the key: delivery routes use
``VARY_RATE_LIMIT_DELIVERY_PER_S``, admin routes ``VARY_RATE_LIMIT_ADMIN_PER_S`` (an admin key on a
delivery route counts against the delivery limit, in its own counter). ``0`` turns a limit off and
skips Redis entirely.

**Fail-open.** If Redis is unreachable or slower than :data:`REDIS_DEADLINE_S`, the request is let
through (availability first: decisions already work without Redis) and a warning is logged at most
once a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Literal

from litestar.exceptions import TooManyRequestsException
from redis.asyncio import Redis

__all__ = ["RateLimiter", "RouteClass", "REDIS_DEADLINE_S"]

log = logging.getLogger("vary.ratelimit")

RouteClass = Literal["delivery", "admin"]
#: Longest the limiter waits for Redis before letting the request through.
REDIS_DEADLINE_S = 0.05
_WARN_EVERY_S = 60.0


def key_id(api_key: str) -> str:
    """First 16 hex of the key's SHA-256: names the counter without holding the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class RateLimiter:
    """Fixed-window counter per (key, route class). ``limits`` maps a route class to requests per
    window; a missing or non-positive limit means unlimited."""

    def __init__(
        self,
        redis: Redis,
        limits: dict[str, int],
        *,
        window_s: int = 1,
        deadline_s: float = REDIS_DEADLINE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.limits = limits
        self.window_s = window_s
        self.deadline_s = deadline_s
        self.clock = clock
        self.failed_open = 0
        self._last_warning = -math.inf

    async def hit(self, api_key: str, route: str) -> None:
        """Count one request; raise :class:`TooManyRequestsException` above the limit."""
        limit = self.limits.get(route, 0)
        if limit <= 0:
            return
        now = self.clock()
        window = int(now // self.window_s)
        counter = f"vary:rl:{{{key_id(api_key)}}}:{route}:{window}"
        try:
            count = await asyncio.wait_for(self._incr(counter), self.deadline_s)
        except Exception as exc:  # Redis down or slow: let the request through
            self.failed_open += 1
            if now - self._last_warning >= _WARN_EVERY_S:
                self._last_warning = now
                log.warning("rate limits not enforced: Redis unavailable (%s)", type(exc).__name__)
            return
        if count > limit:
            retry_after = max(1, math.ceil((window + 1) * self.window_s - now))
            raise TooManyRequestsException(
                detail=f"rate limit exceeded: {limit} requests per {self.window_s} s per API key on {route} routes",
                headers={"Retry-After": str(retry_after)},
                extra={"limit": limit, "window_s": self.window_s, "scope": route},
            )

    async def _incr(self, counter: str) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(counter)
            pipe.expire(counter, self.window_s + 1)
            count, _ = await pipe.execute()
        return int(count)
