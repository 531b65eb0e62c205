"""Which Redis stream an exposure or event goes to, and which keys must share its cluster slot.

Streams are partitioned by visitor so that many aggregate / sink consumers can share the work and
so that, on a Redis Cluster, the streams spread over the nodes. With one partition (the default)
the names are the historical ``vary:exposures`` / ``vary:events``; with ``n > 1`` they are
``vary:exposures:{p}`` / ``vary:events:{p}``, whose ``{p}`` hash tag pins each partition to a slot.

A partition is a function of the visitor id only, so one visitor's exposures and events stay in
order within one partition. The names themselves, and the keys written atomically together with a
stream entry (batch markers, per-stream bookkeeping: :func:`~personalization.store.keys.colocated`,
so a Lua script or MULTI touching both never crosses slots), are in :mod:`personalization.store.keys`.
"""

from __future__ import annotations

import zlib

from personalization.store.keys import stream_name

__all__ = ["all_streams", "partition_of", "stream_for"]


def partition_of(visitor_id: str | None, partitions: int) -> int:
    """Stable partition for a visitor (CRC32, the same in every process); anonymous → 0."""
    if partitions <= 1 or not visitor_id:
        return 0
    return zlib.crc32(visitor_id.encode("utf-8", "surrogatepass")) % partitions


def all_streams(base: str, partitions: int) -> list[str]:
    """Every partition's stream name, in partition order (what a consumer group reads)."""
    return [stream_name(base, p, partitions) for p in range(max(1, partitions))]


def stream_for(base: str, visitor_id: str | None, partitions: int) -> str:
    return stream_name(base, partition_of(visitor_id, partitions), partitions)
