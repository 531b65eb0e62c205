"""Visitor profiles in Redis: one hash per visitor, read in one round trip per decision.

Layout (one key per visitor, hash-tagged so a Redis Cluster keeps all of a visitor's keys on one
node): ``vary:v:{<visitor id>}:p`` → a hash with

=================  ============================================================
``visits``         sessions seen (a new ``session_id``, or 30 min of silence)
``page_views``     ``page_view`` events
``conversions``    ``conversion`` events (all goals)
``first_seen``     Unix seconds of the first event
``last_seen``      Unix seconds of the latest event
``session``        the latest session id (to count visits)
``ch:<channel>``   1 for every channel the visitor used
``g:<goal>``       conversions per goal
``a:<experience>`` sticky variant assignment (written by the exposure writer)
=================  ============================================================

Events update it through :class:`personalization.measurement.EventRecorder` (one Lua script per
event, so counters stay consistent under concurrent writers without a read-modify-write race).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from redis.asyncio import Redis

from personalization.types import Profile

__all__ = [
    "ProfileStore",
    "RedisProfileStore",
    "profile_key",
    "parse_profile",
    "SESSION_TIMEOUT_S",
]

SESSION_TIMEOUT_S = 1800.0
PROFILE_TTL_S = 400 * 86_400


def profile_key(visitor_id: str) -> str:
    """The visitor's profile hash key; ``{…}`` is the cluster hash tag."""
    return f"vary:v:{{{visitor_id}}}:p"


class ProfileStore(Protocol):
    """Where profiles live. Vary ships :class:`RedisProfileStore`; tests may use an in-memory one."""

    async def load(self, visitor_id: str) -> Profile: ...


def _num(raw: bytes | str | None, default: float = 0.0) -> float:
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        return default


def parse_profile(raw: Mapping[bytes | str, bytes | str]) -> Profile:
    """A profile from the hash's fields; unknown fields are ignored, bad numbers read as 0."""
    if not raw:
        return Profile()
    scalars: dict[str, bytes | str] = {}
    channels: list[str] = []
    goals: dict[str, int] = {}
    assignments: dict[str, int] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name.startswith("ch:"):
            channels.append(name[3:])
        elif name.startswith("g:"):
            goals[name[2:]] = int(_num(value))
        elif name.startswith("a:"):
            try:
                assignments[name[2:]] = int(value)
            except ValueError:
                continue
        else:
            scalars[name] = value
    first = scalars.get("first_seen")
    last = scalars.get("last_seen")
    return Profile(
        visits=int(_num(scalars.get("visits"))),
        page_views=int(_num(scalars.get("page_views"))),
        conversions=int(_num(scalars.get("conversions"))),
        first_seen=_num(first) if first is not None else None,
        last_seen=_num(last) if last is not None else None,
        channels=tuple(sorted(channels)),
        goals=goals,
        assignments=assignments,
    )


class RedisProfileStore:
    """Profiles in Redis (see the module docstring for the layout)."""

    def __init__(self, redis: Redis, ttl_s: int = PROFILE_TTL_S) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    async def load(self, visitor_id: str) -> Profile:
        """One ``HGETALL``: the whole profile, sticky assignments included."""
        return parse_profile(await self._redis.hgetall(profile_key(visitor_id)))

    async def erase(self, visitor_id: str) -> int:
        """Delete the visitor's profile; returns the number of keys removed."""
        return int(await self._redis.delete(profile_key(visitor_id)))
