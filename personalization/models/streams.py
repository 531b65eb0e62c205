"""Reading Vary's Redis streams back: every record of a stream, or of its partitions merged, in
write order, ``XRANGE`` in chunks — never the whole stream in one reply.

Training tables (:mod:`personalization.models.logged`), journeys and the Parquet export all read
the exposure and event streams this way. Bounds are on each record's own ``ts``; the stream-id range
they map to is widened by :data:`ID_SLACK_S` so late writes are still found.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis

__all__ = ["ID_SLACK_S", "read_stream", "read_streams"]

log = logging.getLogger("vary.logged")

#: Stream ids carry the *write* time, records their own ``ts``. When ``ts`` bounds become an id
#: range it is widened by this much on each side by default: a record written up to a day after its
#: ``ts`` (a batched exposure, an app's offline events) or whose client clock ran up to a day ahead
#: is still found. Records are then filtered by ``ts`` exactly.
ID_SLACK_S = 86_400.0


def _stream_id(ts: float, upper: bool) -> str:
    """The stream id bound for Unix time ``ts`` (ids are ``<ms>-<seq>``)."""
    ms = max(0, math.ceil(ts * 1000.0) if upper else math.floor(ts * 1000.0))
    return f"{ms}-18446744073709551615" if upper else f"{ms}-0"


def _decode_with(decoder: Any) -> Callable[[bytes], Any]:
    decode = getattr(decoder, "decode", None)
    return decode if callable(decode) else decoder


async def read_stream(
    redis: Redis,
    stream: str,
    decoder: Any,
    since_ts: float | None = None,
    until_ts: float | None = None,
    chunk: int = 5000,
    *,
    early_s: float = ID_SLACK_S,
    late_s: float | None = ID_SLACK_S,
) -> AsyncIterator[Any]:
    """Every record of ``stream`` (field ``data``), decoded, oldest first, ``chunk`` per ``XRANGE``.

    ``decoder`` is a msgspec decoder (or any ``bytes → record`` callable). ``since_ts`` /
    ``until_ts`` bound the record's own ``ts`` (inclusive). They map to a stream-id range — ids are
    ``<ms>-<seq>`` of the write time — from ``since_ts − early_s`` to ``until_ts + late_s``
    (``late_s=None``: no upper id bound, for streams where a record may be written long after its
    ``ts``, e.g. a backfill of old events); then records outside the bounds are dropped by their
    ``ts`` (records without one are kept). An entry that does not decode is skipped and logged: one
    corrupt line must not stop a training run.
    """
    async for _, record in _entries(redis, stream, decoder, since_ts, until_ts, chunk, early_s, late_s):
        yield record


async def read_streams(
    redis: Redis,
    streams: Sequence[str],
    decoder: Any,
    since_ts: float | None = None,
    until_ts: float | None = None,
    chunk: int = 5000,
    *,
    early_s: float = ID_SLACK_S,
    late_s: float | None = ID_SLACK_S,
) -> AsyncIterator[Any]:
    """:func:`read_stream` over several streams — the partitions of one
    (:func:`~personalization.store.partitions.all_streams`) — merged into one sequence in stream-id (write
    time) order, as if they were one stream. Holds one ``XRANGE`` chunk per stream at a time; each
    ``XRANGE`` names one stream, so it also works on a Redis Cluster."""
    if len(streams) == 1:
        async for record in read_stream(
            redis, streams[0], decoder, since_ts, until_ts, chunk, early_s=early_s, late_s=late_s
        ):
            yield record
        return
    sources = [_entries(redis, s, decoder, since_ts, until_ts, chunk, early_s, late_s) for s in streams]
    heap: list[tuple[tuple[int, int], int, Any]] = []
    try:
        for i, source in enumerate(sources):
            first = await anext(source, None)
            if first is not None:
                heap.append((first[0], i, first[1]))
        heapq.heapify(heap)
        while heap:
            _, i, record = heap[0]
            yield record
            following = await anext(sources[i], None)
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (following[0], i, following[1]))
    finally:
        for source in sources:
            await source.aclose()


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def _entries(
    redis: Redis,
    stream: str,
    decoder: Any,
    since_ts: float | None,
    until_ts: float | None,
    chunk: int,
    early_s: float,
    late_s: float | None,
) -> AsyncIterator[tuple[tuple[int, int], Any]]:
    """(stream id as ``(ms, seq)``, record) of :func:`read_stream`."""
    if chunk < 1:
        raise ValueError(f"chunk must be ≥ 1, got {chunk}")
    decode = _decode_with(decoder)
    start = "-" if since_ts is None else _stream_id(since_ts - early_s, upper=False)
    end = "+" if until_ts is None or late_s is None else _stream_id(until_ts + late_s, upper=True)
    skipped = 0
    while True:
        entries = await redis.xrange(stream, min=start, max=end, count=chunk)
        for entry_id, fields in entries:
            raw = fields.get(b"data", fields.get("data"))
            try:
                record = decode(raw)
            except (msgspec.DecodeError, TypeError) as exc:
                skipped += 1
                if skipped == 1 or skipped % 1000 == 0:
                    log.warning("%s: skipped %d undecodable entries (latest %r: %s)", stream, skipped, entry_id, exc)
                continue
            ts = getattr(record, "ts", None)
            if ts is not None:
                if since_ts is not None and ts < since_ts:
                    continue
                if until_ts is not None and ts > until_ts:
                    continue
            yield _id_key(entry_id), record
        if len(entries) < chunk:
            return
        last = entries[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else str(last))
