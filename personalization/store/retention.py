"""Stream retention: trim the exposure and event streams past an age, never past what a reader needs.

The streams are Vary's raw log: results are aggregated from them, sinks forward them, models are
trained and evaluated on them, and ``vary export`` writes them to Parquet. Left alone they grow by
about 0.5 kB per exposure and 0.25 kB per event (docs/scaling.md), so a deployment chooses a
retention (``VARY_STREAM_RETENTION_DAYS``; 0, the default, keeps everything, as before) and Vary
trims each stream with ``XTRIM <stream> MINID <cutoff>``, where the cutoff is the *earlier* of

* the retention cutoff, ``now − retention`` (stream ids are milliseconds since the epoch), and
* the oldest entry some consumer group still needs: for each group, its oldest pending entry
  (delivered, not yet acknowledged — a consumer may have died holding it) or, with none pending, the
  entry after the last one it was delivered (everything from there on is still to be read).

So an aggregator or a sink that lags, or is down, holds back trimming of the entries it has not
processed: retention never costs a count or a forwarded event. Aggregated results live in their own
keys and are not affected. Export what you want to keep longer before it ages out.

Trimming is exact (``MINID`` without ``~``): each pass removes at most what aged out since the last
one, so its cost is proportional to the traffic of one interval. It runs beside the aggregator (the
in-process one or ``vary aggregate``) every ``VARY_STREAM_TRIM_EVERY_S`` seconds, and on demand with
``vary trim``. Several processes trimming the same stream is harmless (``XTRIM`` is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import msgspec
from redis.asyncio import Redis

__all__ = ["StreamRetention", "TrimResult", "oldest_needed", "trim_streams"]

log = logging.getLogger("vary.retention")


class TrimResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one pass did to one stream."""

    stream: str
    #: Entries older than this id were removed (``MINID``).
    cutoff: str
    #: The retention cutoff was held back by this consumer group (it still needs older entries).
    held_by: str | None
    trimmed: int


def _id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def oldest_needed(redis: Redis, stream: str) -> tuple[tuple[int, int], str] | None:
    """The oldest entry id some consumer group of ``stream`` still needs, with that group's name;
    ``None`` when the stream has no groups (or does not exist)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except Exception as exc:  # no such key: nothing to keep
        if "no such key" in str(exc).lower():
            return None
        raise
    needed: tuple[tuple[int, int], str] | None = None
    for group in groups:
        name = group["name"].decode() if isinstance(group["name"], bytes) else str(group["name"])
        if int(group["pending"]) > 0:
            summary = await redis.xpending(stream, name)
            point = _id(summary["min"])
        else:  # everything up to the last delivered entry is done: the next one is needed
            ms, seq = _id(group["last-delivered-id"])
            point = (ms, seq + 1)
        if needed is None or point < needed[0]:
            needed = (point, name)
    return needed


async def trim_streams(
    redis: Redis, streams: Sequence[str], retention_s: float, now: float | None = None
) -> list[TrimResult]:
    """Trim each of ``streams`` to ``retention_s`` seconds, never past an entry a consumer group
    still needs (see the module docstring). One ``XINFO GROUPS`` (+ ``XPENDING`` per group with
    pending entries) and one ``XTRIM`` per stream; each names one key, so it works on a cluster."""
    now = time.time() if now is None else now
    retention_cut = (int((now - retention_s) * 1000), 0)
    results: list[TrimResult] = []
    for stream in streams:
        cut, held_by = retention_cut, None
        needed = await oldest_needed(redis, stream)
        if needed is not None and needed[0] < cut:
            cut, held_by = needed
        cutoff = f"{cut[0]}-{cut[1]}"
        trimmed = int(await redis.xtrim(stream, minid=cutoff, approximate=False))
        results.append(TrimResult(stream=stream, cutoff=cutoff, held_by=held_by, trimmed=trimmed))
    return results


class StreamRetention:
    """Trims ``streams`` every ``every_s`` seconds until stopped (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        streams: Sequence[str],
        retention_s: float,
        every_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.streams = list(streams)
        self.retention_s = retention_s
        self.every_s = every_s
        self.clock = clock
        #: Entries removed so far by this process, and passes that failed (Redis unreachable …).
        self.trimmed = 0
        self.failed_passes = 0
        self._held_by: dict[str, str | None] = {}

    async def trim_once(self) -> list[TrimResult]:
        results = await trim_streams(self.redis, self.streams, self.retention_s, self.clock())
        self.trimmed += sum(r.trimmed for r in results)
        for result in results:
            if result.trimmed:
                log.info("trimmed %d entries of %s older than %s", result.trimmed, result.stream, result.cutoff)
            if result.held_by != self._held_by.get(result.stream):  # a change, not every pass
                self._held_by[result.stream] = result.held_by
                if result.held_by is not None:
                    log.info(
                        "%s: retention held back at %s by consumer group %r (it has not acknowledged older entries)",
                        result.stream, result.cutoff, result.held_by,
                    )
        return results

    async def run_forever(self, stop: asyncio.Event) -> None:
        """A pass now, then one every ``every_s``; a failed pass is logged and retried next time."""
        while not stop.is_set():
            try:
                await self.trim_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed_passes += 1
                log.warning("stream trimming failed (%s); retrying in %.0f s", exc, self.every_s)
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
            except TimeoutError:
                continue
