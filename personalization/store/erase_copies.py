"""Erasing a visitor everywhere Vary copied them: Redis, local files, exports, sinks.

``DELETE /v1/visitors/{id}`` runs :func:`erase_everywhere`, in this order:

1. the local spool and journal files (:mod:`personalization.store.spool_erasure`) — first, so
   nothing of theirs is replayed into Redis after step 2;
2. Redis: their keys, stream entries, event markers and feedback tags
   (:mod:`personalization.store.erasure`);
3. the sinks' dead letters, ``vary:sinks:dead:<sink>`` (:func:`~personalization.sinks.erasures.erase_dead_letters`);
4. the Parquet exports the API and ``vary export`` wrote (:mod:`personalization.measurement.export_erasure`);
5. an erase notice for every sink, so each receiver deletes too
   (:func:`~personalization.sinks.erasures.notify_sinks`).

The answer counts what each step removed (:class:`~personalization.store.erasure.Erasure`). File
work runs off the event loop. The embedded Valkey's append-only file is the API's to compact
(:mod:`api.embedded.valkey`), as only it knows whether it runs that server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from redis.asyncio import Redis

from personalization.measurement.export_erasure import erase_from_exports, export_roots
from personalization.sinks.erasures import (
    erase_dead_letters,
    notify_sinks,
    trim_delivered,
)
from personalization.store.erasure import Erasure, erase_visitor
from personalization.store.keys import dead_letter_stream
from personalization.store.spool_erasure import erase_from_spools

__all__ = ["erase_everywhere", "spool_directories"]


def spool_directories(data_dir: Path) -> list[Path]:
    """Where the workers of one data dir keep exposure spools and journals, and event spools."""
    return [Path(data_dir) / "spool", Path(data_dir) / "spool" / "events"]


async def _dead_letter_streams(redis: Redis) -> list[str]:
    found = [
        key.decode() if isinstance(key, bytes) else str(key)
        async for key in redis.scan_iter(match=dead_letter_stream("*"), count=1000, _type="STREAM")
    ]
    return sorted(set(found))


async def erase_everywhere(redis: Redis, visitor_id: str, *, data_dir: Path, partitions: int = 1) -> Erasure:
    """Erase ``visitor_id`` from every copy (see the module docstring); returns the counts."""
    spools = await asyncio.to_thread(erase_from_spools, spool_directories(data_dir), visitor_id)
    erased = await erase_visitor(redis, visitor_id, partitions=partitions)
    dead = await erase_dead_letters(redis, await _dead_letter_streams(redis), visitor_id)
    rows, files = await asyncio.to_thread(erase_from_exports, export_roots(data_dir), visitor_id)
    await notify_sinks(redis, visitor_id)
    await trim_delivered(redis)  # with no sink configured, the notice (and the id in it) goes at once
    return msgspec.structs.replace(
        erased,
        dead_letters_deleted=dead,
        sink_notices=1,
        spool_entries_deleted=spools.entries,
        spool_files_rewritten=spools.files,
        spool_files_busy=spools.busy,
        export_rows_deleted=rows,
        export_files_rewritten=files,
    )
