"""The exposure batch script and how a batch's calls of it reach Redis (one round trip).

Split from :mod:`personalization.store.exposures` (which builds the calls and decides what a failure
means): here only the script texts and the sending, on a single server as one pipeline, on a cluster
one call per stream's node, concurrently (redis-py's cluster pipeline refuses ``EVALSHA``).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError

__all__ = ["COUNT_ONE", "WRITE_BATCH", "WRITE_BATCH_SHA", "call_batches", "eval_batch"]

#: The batch script (``scripts/write_batch.lua``, whose header names its KEYS and ARGV): returns the
#: exposures written, or -1 when the marker existed (a replay of a batch Redis already has).
_SCRIPTS = Path(__file__).parent / "scripts"
#: ``vary_count``: the frequency-cap counter (:mod:`personalization.decision.frequency`), prepended.
_COUNT = (_SCRIPTS / "exposure_count.lua").read_text()
WRITE_BATCH = _COUNT + (_SCRIPTS / "write_batch.lua").read_text()
#: One counter on its own (a cluster: the profile hash is not in the stream's slot).
COUNT_ONE = _COUNT + (_SCRIPTS / "exposure_count_one.lua").read_text()
WRITE_BATCH_SHA = hashlib.sha1(WRITE_BATCH.encode()).hexdigest()


async def call_batches(
    redis: Any, calls: list[tuple[object, ...]], loose: list[tuple[str, str, str | int]], cluster: bool
) -> list[int]:
    """The script results, one per call (``-1``: that part was already written); ``loose``: the
    cluster's assignments as (profile hash, field, variant). A server that
    does not know the script (restarted, failed over, flushed) gets it loaded, and only the
    calls it refused are sent again, so each part is counted once."""
    if len(calls) == 1 and not loose:
        return [await eval_batch(redis, calls[0])]
    if cluster:  # redis-py's cluster pipeline refuses EVALSHA: one call per stream's node, concurrently
        assignments = redis.pipeline(transaction=False)
        for key, field, variant in loose:
            assignments.hsetnx(key, field, variant)
        *results, _ = await asyncio.gather(*(eval_batch(redis, call) for call in calls), assignments.execute())
        return results
    pipe = redis.pipeline(transaction=False)
    for key, field, variant in loose:
        pipe.hsetnx(key, field, variant)
    for call in calls:
        pipe.evalsha(WRITE_BATCH_SHA, *call)
    results = (await pipe.execute(raise_on_error=False))[len(loose) :]
    for i, result in enumerate(results):
        if isinstance(result, NoScriptError):
            results[i] = await eval_batch(redis, calls[i])
        elif isinstance(result, Exception):
            raise result
    return results


async def eval_batch(redis: Any, call: tuple[object, ...]) -> int:
    """One call of the batch script, loading it first if the server does not know it."""
    try:
        return int(await redis.evalsha(WRITE_BATCH_SHA, *call))
    except NoScriptError:
        await redis.script_load(WRITE_BATCH)
        return int(await redis.evalsha(WRITE_BATCH_SHA, *call))
