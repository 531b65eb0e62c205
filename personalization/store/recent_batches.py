"""Batches Redis acknowledged moments ago, kept until the server has had time to persist them.

Why: Redis and Valkey with ``appendfsync everysec`` (the embedded server's setting and the usual
production one) acknowledge a write before it is in the append-only file. While the previous
second's background ``fsync`` is still running, the server holds new writes in memory and answers
them anyway, for up to 2 s (``flushAppendOnlyFile`` in ``aof.c``: "postpone the write"); a server
killed in that window comes back without writes it had acknowledged. Measured on this project's
embedded Valkey with its ``fsync`` delayed 400 ms (strace fault injection, a slow disk): SIGKILL
lost 3,650 and 26,750 of ~200,000 acknowledged ``RPUSH``es in 2 of 5 trials. A CI run of
``tests/reliability/test_redis_outage.py`` lost the exposures of 56 of 20,000 answered requests
that way: the exposure writer had cleared their journal records when Redis acknowledged them.

What the writer does about it (:class:`HeldWrites`, over :class:`RecentBatches` and
:class:`ServerIdentity`; the event recorder does the same with its events): each acknowledged
batch is kept (one the writer sent, and one its spool replay wrote or found written: a batch whose
reply timed out is spooled, and its replay to the same server is answered by the marker before the
server may have persisted it: a CI run lost one batch, the exposures of 69 of 20,000 requests, most
likely this way), with when it was acknowledged, until the same server (same ``run_id``, asked with
``INFO server`` about once a second) is seen alive :data:`HOLD_S` after that: by then the server has
written it to the operating system (a process kill no longer loses it). When the ``run_id`` changes
(a restart, a failover to a replica) the writer sends the batches it still holds again, oldest
first. The batch script's marker makes that exact: a batch the server still has is skipped, one it
lost is written again (marker and exposures are one atomic script, so they survive or vanish
together). While Redis cannot be asked (down), nothing is released; :data:`MAX_ITEMS` bounds what is
held, the oldest released first (logged).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from redis.exceptions import ResponseError

__all__ = ["HOLD_S", "MAX_ITEMS", "HeldWrites", "RecentBatches", "ServerIdentity"]

log = logging.getLogger("vary.exposures")

#: How long after its acknowledgement a batch is held: the 2 s a write may be postponed while an
#: ``fsync`` runs, plus the 1 s ``fsync`` interval.
HOLD_S = 3.0
#: Most items (exposures and assignments) held; at 5,000 requests/s of 6 items, ~3 s.
MAX_ITEMS = 100_000

Item = TypeVar("Item")


class RecentBatches(Generic[Item]):
    """Acknowledged batches, oldest first, until :meth:`confirm` releases them (module docstring)."""

    def __init__(self, hold_s: float = HOLD_S, max_items: int = MAX_ITEMS, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_s = hold_s
        self.max_items = max_items
        self._clock = clock
        #: (acknowledged at, batch id, items).
        self._held: deque[tuple[float, str, list[Item]]] = deque()
        self.items = 0
        #: Items released unconfirmed because :attr:`max_items` was reached.
        self.overflowed = 0

    def add(self, batch_id: str, items: list[Item]) -> None:
        """``items`` were acknowledged under ``batch_id`` just now."""
        self._held.append((self._clock(), batch_id, items))
        self.items += len(items)
        while self.items > self.max_items and len(self._held) > 1:
            _, _, released = self._held.popleft()
            self.items -= len(released)
            if self.overflowed == 0:
                log.warning("more than %d acknowledged exposures held unconfirmed (Redis not answering "
                            "INFO?): the oldest are released; a Redis crash now could lose them", self.max_items)
            self.overflowed += len(released)

    def confirm(self, alive_at: float) -> None:
        """The server that acknowledged the held batches was alive at ``alive_at`` (clock time):
        release those acknowledged :attr:`hold_s` or more before it."""
        horizon = alive_at - self.hold_s
        while self._held and self._held[0][0] <= horizon:
            _, _, released = self._held.popleft()
            self.items -= len(released)

    def take(self) -> list[tuple[str, list[Item]]]:
        """Every held batch, oldest first, and hold none."""
        taken = [(batch_id, items) for _, batch_id, items in self._held]
        self._held.clear()
        self.items = 0
        return taken

    def __len__(self) -> int:
        return len(self._held)


class ServerIdentity:
    """The server's ``run_id`` (``INFO server``; on a cluster every node's, joined), to tell a
    restarted or failed-over server from the one that acknowledged a batch."""

    def __init__(self, redis: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._clock = clock
        self.known: str | None = None
        #: The server refused ``INFO`` (renamed, or denied by an ACL): no restart can be told, and
        #: held batches are released as if confirmed (what happened before batches were held).
        self.refused = False

    async def check(self) -> tuple[bool, float]:
        """``(changed, asked_at)``: whether the identity differs from the one seen last time (never
        on the first look), and the clock time just before asking. Raises what Redis raises."""
        asked_at = self._clock()
        try:
            info = await self._redis.info("server")
        except ResponseError as exc:  # a refusal, not an outage: the spool replay must go on
            if not self.refused:
                log.warning("Redis refused INFO (%s): acknowledged writes are not held for a restart", exc)
            self.refused = True
            return False, asked_at
        identity = _run_id(info)
        changed = self.known is not None and identity != self.known
        self.known = identity
        return changed, asked_at


class HeldWrites(Generic[Item]):
    """What the exposure writer and the event recorder share: their acknowledged writes held
    (:class:`RecentBatches`), the server's identity watched (:class:`ServerIdentity`), and the writes a
    restarted server lost sent again (:meth:`resend_if_restarted`), counted in :attr:`resent`."""

    def __init__(self, redis: Any, what: str, hold_s: float = HOLD_S) -> None:
        self.batches: RecentBatches[Item] = RecentBatches(hold_s)
        self.identity = ServerIdentity(redis)
        self._what = what
        #: Items the owner's ``send`` counted as written again (a restarted server had lost them).
        self.resent = 0

    def add(self, batch_id: str, items: list[Item]) -> None:
        self.batches.add(batch_id, items)

    async def resend_if_restarted(
        self,
        send: Callable[[str, list[Item]], Awaitable[int]],
        keep: Callable[[str, list[Item], Exception], None],
    ) -> int:
        """If the server's identity changed since the last look, ``send`` every held batch again
        (oldest first; each one the new server acknowledges is held again), else release those
        confirmed. Returns what ``send`` counted as written. When a send fails (the server went away
        again) that batch and the rest are handed to ``keep`` (a spool) and the error raised."""
        changed, asked_at = await self.identity.check()
        if not changed:
            self.batches.confirm(asked_at)
            return 0
        batches = self.batches.take()
        written = 0
        for i, (batch_id, items) in enumerate(batches):
            try:
                written += await send(batch_id, items)
            except Exception as exc:
                for later_id, later in batches[i:]:
                    keep(later_id, later, exc)
                raise
            self.batches.add(batch_id, items)
        self.resent += written
        if batches:  # a restart with nothing held (an idle worker) is not news
            log.warning("Redis restarted (run_id changed): %d held batches sent again, %d %s it had lost written",
                        len(batches), written, self._what)
        return written


def _run_id(info: dict[str, Any]) -> str:
    if "run_id" in info:
        return str(info["run_id"])
    # a cluster's INFO is keyed by node
    return ",".join(sorted(str(node.get("run_id")) for node in info.values() if isinstance(node, dict)))
