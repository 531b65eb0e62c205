"""Erasing a visitor: their profile, assignments, attribution state, events and exposures.

Every per-visitor key carries the visitor id as its hash tag (``vary:v:{<id>}:…``), so one
``SCAN MATCH`` finds them all (on a cluster, on the one node owning their slot) and one ``DEL`` of
them stays within a slot. That includes the aggregation's step-1 outcomes (``…:agg:<day>``), whose
entries are erased here too, so they can never be replayed. Streams hold records of many
visitors, so their entries are read in chunks and the visitor's are deleted with ``XDEL``; when
the streams are partitioned only the visitor's own partition holds them
(:func:`~personalization.store.partitions.stream_for`), so only that one is read. (After a change of
``VARY_STREAM_PARTITIONS`` older entries sit in the partition of the old count: erase with that
count too.) Aggregated counters (sums and
counts per variant, with no visitor in them) stay: they are not personal data, and removing one
visitor's contribution would need the raw events that were just erased.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from personalization.store.keys import EVENTS, EXPOSURES, visitor_keys_pattern
from personalization.store.partitions import stream_for

__all__ = ["Erasure", "erase_visitor"]


class Erasure(msgspec.Struct, frozen=True, kw_only=True):
    visitor_id: str
    keys_deleted: int
    exposures_deleted: int
    events_deleted: int


class _VisitorOnly(msgspec.Struct):
    visitor_id: str | None = None


_DECODE_VISITOR = msgspec.json.Decoder(_VisitorOnly)


async def _erase_from_stream(redis: Redis, stream: str, visitor_id: str, chunk: int = 5000) -> int:
    deleted = 0
    start = "-"
    while True:
        entries = await redis.xrange(stream, min=start, max="+", count=chunk)
        if not entries:
            return deleted
        mine = []
        for entry_id, fields in entries:
            data = fields.get(b"data") or fields.get("data")
            if data is None:
                continue
            try:
                if _DECODE_VISITOR.decode(data).visitor_id == visitor_id:
                    mine.append(entry_id)
            except msgspec.DecodeError:
                continue
        if mine:
            deleted += int(await redis.xdel(stream, *mine))
        if len(entries) < chunk:
            return deleted
        last = entries[-1][0]
        last = last.decode() if isinstance(last, bytes) else last
        start = "(" + last


async def erase_visitor(
    redis: Redis,
    visitor_id: str,
    streams: Sequence[str] = (EXPOSURES, EVENTS),
    *,
    partitions: int = 1,
) -> Erasure:
    """Delete everything Vary stores about one visitor (see the module docstring). ``streams`` are
    the base names (exposures first), ``partitions`` the deployment's partition count."""
    pattern = visitor_keys_pattern(visitor_id)
    keys = [key async for key in redis.scan_iter(match=pattern, count=1000)]
    deleted_keys = int(await redis.delete(*keys)) if keys else 0
    own = [stream_for(base, visitor_id, partitions) for base in streams]
    exposures = await _erase_from_stream(redis, own[0], visitor_id)
    events = sum([await _erase_from_stream(redis, s, visitor_id) for s in own[1:]])
    return Erasure(
        visitor_id=visitor_id, keys_deleted=deleted_keys, exposures_deleted=exposures, events_deleted=events
    )

