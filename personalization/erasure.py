"""Erasing a visitor: their profile, assignments, attribution state, events and exposures.

Every per-visitor key carries the visitor id as its hash tag (``vary:v:{<id>}:…``), so one
``SCAN MATCH`` finds them all on a single node. Streams hold records of many visitors, so their
entries are read in chunks and the visitor's are deleted with ``XDEL``. Aggregated counters (sums and
counts per variant, with no visitor in them) stay: they are not personal data, and removing one
visitor's contribution would need the raw events that were just erased.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from personalization.events import EVENT_STREAM
from personalization.exposures import EXPOSURE_STREAM

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
    redis: Redis, visitor_id: str, streams: Sequence[str] = (EXPOSURE_STREAM, EVENT_STREAM)
) -> Erasure:
    """Delete everything Vary stores about one visitor (see the module docstring)."""
    pattern = "vary:v:{" + _glob_escape(visitor_id) + "}:*"
    keys = [key async for key in redis.scan_iter(match=pattern, count=1000)]
    deleted_keys = int(await redis.delete(*keys)) if keys else 0
    exposures = await _erase_from_stream(redis, streams[0], visitor_id)
    events = sum([await _erase_from_stream(redis, s, visitor_id) for s in streams[1:]])
    return Erasure(
        visitor_id=visitor_id, keys_deleted=deleted_keys, exposures_deleted=exposures, events_deleted=events
    )


def _glob_escape(text: str) -> str:
    """Escape Redis glob characters so an id like ``a*`` matches only itself."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
