"""What Redis says about its memory: the eviction policy Vary needs, and whether writes are refused.

Vary keeps its counters, sticky assignments and batch markers in Redis and nothing else holds them:
a server that *evicts* keys when it is full silently drops an assignment (the visitor is re-bucketed)
or a counter (results go wrong) or a dedupe marker (a replay is counted twice). So Vary needs
``maxmemory-policy noeviction`` (the Redis default): a full server refuses writes with an ``OOM``
error instead, which Vary treats like an outage — exposures and events go to the local spools and are
replayed once there is room — and ``/ready`` says so (``redis_oom``).

Read from ``INFO memory`` (one round trip; ``CONFIG GET`` is often renamed away on managed Redis).
On a cluster every primary answers and the worst one is reported.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from redis.asyncio import Redis

__all__ = ["SAFE_POLICIES", "MemoryState", "memory_state", "warn_if_evicting"]

log = logging.getLogger("vary.redis")

#: Policies that never drop a key Vary wrote: ``noeviction`` (refuse writes when full). Every
#: ``allkeys-*`` and ``volatile-*`` policy may evict Vary's keys (most of them carry a TTL).
SAFE_POLICIES = frozenset({"noeviction"})


class MemoryState(msgspec.Struct, frozen=True, kw_only=True):
    """``policy``: the server's ``maxmemory-policy`` (the first evicting one on a cluster);
    ``oom``: a ``maxmemory`` is set and used memory is past it, so writes are refused now."""

    policy: str | None
    oom: bool
    used_bytes: int
    max_bytes: int

    @property
    def evicting(self) -> bool:
        return self.policy is not None and self.policy not in SAFE_POLICIES


def _one(info: dict[str, Any]) -> MemoryState:
    used = int(info.get("used_memory", 0))
    limit = int(info.get("maxmemory", 0))
    policy = info.get("maxmemory_policy")
    return MemoryState(
        policy=None if policy is None else str(policy),
        # Redis compares used memory less its replication and AOF buffers; "used ≥ limit" is the
        # operator's view and errs on the side of saying so.
        oom=bool(limit) and used >= limit,
        used_bytes=used,
        max_bytes=limit,
    )


async def memory_state(redis: Redis) -> MemoryState:
    """The server's (or the worst primary's) memory state. Raises what redis-py raises when unreachable."""
    info: dict[str, Any] = await redis.info("memory")
    if "used_memory" in info:
        return _one(info)
    # A cluster client answers {node: {...}} (or {node: value} per field on older redis-py).
    nodes = [_one(value) for value in info.values() if isinstance(value, dict)]
    if not nodes:
        return MemoryState(policy=None, oom=False, used_bytes=0, max_bytes=0)
    evicting = [n.policy for n in nodes if n.evicting]
    return MemoryState(
        policy=evicting[0] if evicting else nodes[0].policy,
        oom=any(n.oom for n in nodes),
        used_bytes=sum(n.used_bytes for n in nodes),
        max_bytes=sum(n.max_bytes for n in nodes),
    )


async def warn_if_evicting(redis: Redis) -> MemoryState | None:
    """Log a warning when the server may evict Vary's keys (at start; ``None`` when Redis cannot tell)."""
    try:
        state = await memory_state(redis)
    except Exception:  # noqa: BLE001 - unreachable at start: /ready reports it once Redis answers
        return None
    if state.evicting:
        log.warning(
            "Redis maxmemory-policy is %s: a full Redis will evict Vary's sticky assignments, counters and "
            "dedupe markers, silently corrupting results; set maxmemory-policy noeviction (docs/scaling.md)",
            state.policy,
        )
    if state.oom:
        log.warning("Redis is out of memory (used %d of maxmemory %d bytes): writes are refused and spooled",
                    state.used_bytes, state.max_bytes)
    return state
