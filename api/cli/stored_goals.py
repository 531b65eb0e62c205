"""The goals each experience counts, for ``vary aggregate`` running alone.

The in-process aggregator reads them from the snapshot its worker serves. A standalone aggregator
has no content of its own, so it compiles the content the serving workers keep in Redis
(:class:`~content.store.ContentStore`) whenever its version changes, and hands the aggregator the
:class:`~personalization.measurement.goals.GoalPolicy` of it. Until content is found, the default
policy applies (invented goals are never counted).
"""

from __future__ import annotations

import asyncio
import logging

import anyio.to_thread
from redis.asyncio import Redis

from content.compile import compile_snapshot
from content.snapshot import ContentSnapshot
from content.store import ContentStore
from personalization.measurement.goals import GoalPolicy, goal_policy_of

__all__ = ["StoredGoals"]

log = logging.getLogger("vary.aggregation")


class StoredGoals:
    """Call it for the current policy; :meth:`refresh` (or :meth:`run_forever`) keeps it current."""

    def __init__(self, redis: Redis, *, link_depth: int, plugin_types: frozenset[str] = frozenset()) -> None:
        self._store = ContentStore(redis)
        self._link_depth = link_depth
        self._plugin_types = plugin_types
        self._version: str | None = None
        self._policy = goal_policy_of(None)
        self.snapshot: ContentSnapshot | None = None

    def __call__(self) -> GoalPolicy:
        return self._policy

    async def refresh(self) -> None:
        """Recompile when the stored content's version changed (one ``HGET`` when it did not)."""
        version = await self._store.version()
        if version is None or version == self._version:
            return
        stored = await self._store.load()
        if stored is None:
            return
        snapshot = await anyio.to_thread.run_sync(
            lambda: compile_snapshot(stored.items, self._link_depth, plugin_types=self._plugin_types)
        )
        self._policy, self._version = goal_policy_of(snapshot), stored.version
        self.snapshot = snapshot  # its experiences, for the guardrail monitor beside the aggregator
        log.info("goal policy from content %s", stored.version)

    async def run_forever(self, stop: asyncio.Event, every_s: float = 10.0) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down or damaged content: keep the last policy, try again
                log.exception("reading the stored content's goals failed; keeping the last ones")
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
                pass
