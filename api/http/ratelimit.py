"""Per-API-key rate limits, counted in Redis so every worker and instance shares them.

A fixed one-second window per key and route class, counted in ``vary:rl:{<key hash>}:<route>:<second>``.
Counting every request in Redis would cost each request a round trip, so a worker **leases** its
budget: it claims a slice of the window's limit at once (``INCRBY <slice>`` + ``EXPIRE``, one
pipelined transaction) and spends the slice locally; when half of it is spent, the next slice is
claimed in the background, so requests do not wait for Redis at all in the steady state. The slice
is 1 % of the limit (at least 1: limits under 200 per second are counted request by request, exactly
as before); with the default 5,000 per second a worker asks Redis once per 50 requests. The sum
claimed by all workers never exceeds the limit, so nothing gets through above it; the cost is that
what a worker has claimed but not spent when the window closes is not lent to another worker (at
most 1.5 slices per worker and window may be refused early).

Above the limit the request is refused with 429, a ``Retry-After`` header (seconds until the window
ends, at least 1) and a detail naming the limit. Once Redis has said the window is spent, the worker
refuses locally until the window ends, without asking again. The key is never stored in Redis: the
counter is named by the first 16 hex of its SHA-256.

The limit depends on the *route* class, not on the key: delivery routes use
``VARY_RATE_LIMIT_DELIVERY_PER_S``, admin routes ``VARY_RATE_LIMIT_ADMIN_PER_S`` (an admin key on a
delivery route counts against the delivery limit, in its own counter). ``0`` turns a limit off and
skips Redis entirely.

**Fail-open.** If Redis is unreachable or slower than :data:`REDIS_DEADLINE_S`, the request is let
through (availability first: decisions already work without Redis) and a warning is logged at most
once a minute. A claim slower than the deadline is not abandoned (Redis has counted it): when it
answers, the requests let through meanwhile are paid from its slice. When Redis is back, counting
resumes in the current window: nothing sticks from the outage (tests/api/http/test_rate_limit_outage.py),
but a load above the limit — easily reached while profile reads are skipped — is refused from then on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Literal, NoReturn

from litestar.exceptions import TooManyRequestsException
from redis.asyncio import Redis

from api.metrics import RATE_LIMITED
from personalization.store.keys import rate_limit_key

__all__ = ["RateLimiter", "RouteClass", "REDIS_DEADLINE_S"]

log = logging.getLogger("vary.ratelimit")

RouteClass = Literal["delivery", "admin"]
#: Longest the limiter waits for Redis before letting the request through.
REDIS_DEADLINE_S = 0.05
_WARN_EVERY_S = 60.0


def key_id(api_key: str) -> str:
    """First 16 hex of the key's SHA-256: names the counter without holding the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


#: Share of a window's limit one claim takes (the lease), and the limit above which leases start.
LEASE_FRACTION = 0.01


class _Lease:
    """One worker's unspent share of one (key, route) window."""

    __slots__ = ("window", "slice", "left", "spent", "claim", "claimed_at", "debt", "failed")

    def __init__(self, window: int, slice_: int) -> None:
        self.window = window
        #: Requests one claim asks for; with 2 or more, the next claim starts when half is spent.
        self.slice = slice_
        self.left = 0
        #: Redis said the window's limit is used up: refuse locally until the window ends.
        self.spent = False
        #: The claim in flight; every request that finds the lease empty waits for this one.
        self.claim: asyncio.Task[None] | None = None
        #: When that claim was sent (monotonic): a claim older than the deadline is not waited for.
        self.claimed_at = 0.0
        #: Requests let through while the claim was slower than the deadline, paid from its grant.
        self.debt = 0
        #: The last claim failed (Redis down): requests waiting for it are let through.
        self.failed = False


class RateLimiter:
    """Fixed-window limit per (key, route class), leased from a Redis counter (see the module
    docstring). ``limits`` maps a route class to requests per window; a missing or non-positive
    limit means unlimited."""

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
        #: Round trips to Redis so far (claims), for tests and the benchmark's accounting.
        self.claims = 0
        self._last_warning = -math.inf
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._key_ids: dict[str, str] = {}

    async def hit(self, api_key: str, route: str) -> None:
        """Count one request; raise :class:`TooManyRequestsException` above the limit."""
        limit = self.limits.get(route, 0)
        if limit <= 0:
            return
        now = self.clock()
        window = int(now // self.window_s)
        lease = self._leases.get((api_key, route))
        if lease is None or lease.window < window:
            lease = self._leases[(api_key, route)] = _Lease(window, self._slice(limit))
        for _ in range(3):  # the slice a claim brings may go to other waiters first: claim again
            if lease.left > 0:
                lease.left -= 1
                if lease.slice > 1 and lease.left * 2 < lease.slice and lease.claim is None and not lease.spent:
                    # half the slice is gone: claim the next one now, so no request waits for it
                    lease.claim = asyncio.get_running_loop().create_task(
                        self._claim(lease, api_key, route, limit, now), name="vary-rate-limit-claim"
                    )
                    lease.claimed_at = time.monotonic()
                return
            if lease.spent:
                self._refuse(limit, route, window, now)
            claim = lease.claim
            if claim is None:
                claim = lease.claim = asyncio.get_running_loop().create_task(
                    self._claim(lease, api_key, route, limit, now), name="vary-rate-limit-claim"
                )
                lease.claimed_at = time.monotonic()
            # Wait for the claim, not past the deadline counted from when the claim was *sent*: on a
            # stalled Redis one claim hangs until the socket timeout, and every request arriving
            # meanwhile would otherwise wait the whole deadline again. A late claim is not cancelled
            # (the counter is already raised in Redis): it still credits this lease when it answers.
            wait_s = self.deadline_s - (time.monotonic() - lease.claimed_at)
            done, _ = await asyncio.wait((claim,), timeout=wait_s) if wait_s > 0 else (set(), set())
            if not done or lease.failed:
                self._fail_open(now, "TimeoutError" if not done else "ConnectionError")
                if not done:
                    lease.debt += 1
                return
        self._fail_open(now, "contention")

    def _slice(self, limit: int) -> int:
        return max(1, int(limit * LEASE_FRACTION))

    async def _claim(self, lease: _Lease, api_key: str, route: str, limit: int, now: float) -> None:
        """Take a slice of the window's budget from Redis and credit it to ``lease``; a spent window
        marks the lease spent; a failure marks it failed (its waiters are let through)."""
        key = self._key_ids.get(api_key)
        if key is None:
            if len(self._key_ids) > 10_000:  # only authenticated keys get here; bound it anyway
                self._key_ids.clear()
            key = self._key_ids[api_key] = key_id(api_key)
        want = lease.slice
        self.claims += 1
        try:
            count = await self._incr(rate_limit_key(key, route, lease.window), want)
        except Exception as exc:  # Redis down: let the waiting requests through
            lease.failed = True
            self._warn(now, exc)
            return
        finally:
            lease.claim = None
        granted = max(0, min(want, limit - (count - want)))
        lease.failed = False
        if granted == 0:
            lease.spent = True
        lease.left = max(0, lease.left + granted - lease.debt)
        lease.debt = 0

    def _fail_open(self, now: float, reason: str) -> None:
        self.failed_open += 1
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning("rate limits not enforced: Redis unavailable (%s)", reason)

    def _warn(self, now: float, exc: Exception) -> None:
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning("rate limits not enforced: Redis unavailable (%s)", type(exc).__name__)

    def _refuse(self, limit: int, route: str, window: int, now: float) -> NoReturn:
        retry_after = max(1, math.ceil((window + 1) * self.window_s - now))
        RATE_LIMITED.labels(route).inc()  # route is the key scope: "delivery" or "admin"
        raise TooManyRequestsException(
            detail=f"rate limit exceeded: {limit} requests per {self.window_s} s per API key on {route} routes",
            headers={"Retry-After": str(retry_after)},
            extra={"limit": limit, "window_s": self.window_s, "scope": route},
        )

    async def _incr(self, counter: str, amount: int) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(counter, amount)
            pipe.expire(counter, self.window_s + 1)
            count, _ = await pipe.execute()
        return int(count)
