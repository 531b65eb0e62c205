"""Exposure logging: sustained exposures/s into Redis through ``ExposureWriter`` vs a raw XADD loop.

Both sides write the same pre-built :class:`~personalization.types.Exposure` records (msgspec JSON in
field ``data``, as Vary stores them) to their own stream on the same embedded Valkey:

* **Vary**: a producer submits 3 exposures (one request's worth) at a time, each with a new sticky
  assignment (a new visitor entering three experiences, the worst case), yielding to the event loop every 32 submissions the way a busy server does between
  requests, and waiting whenever 20,000 are queued (sustained load, not a burst that overflows the
  queue); the writer drains its queue in batches (``exposure_batch_size``, 500) — each batch one
  Lua script call that sets its batch marker and writes every exposure and assignment, the same code
  that runs in ``vary serve``, journal included (every submission is first appended to the
  write-ahead journal on local disk, :mod:`personalization.store.journal`). The clock stops
  when everything submitted is in Redis (``flush``).
* **Baseline**: the simplest correct fast loop — encode and ``XADD`` in pipelines of 500, no
  transaction, no marker, no assignments, one pipeline in flight.

Zero loss is checked, not assumed: the stream must hold exactly as many entries as were submitted,
with nothing dropped or spooled.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import comparison, spread

__all__ = ["run"]

TARGET = 0.5
BATCH = 500


def _exposures(n: int) -> list[Any]:
    from personalization.types import new_exposure_id
    from personalization.types import Exposure

    now = time.time()
    return [
        Exposure(
            id=new_exposure_id(), ts=now, visitor_id=f"visitor-{i // 3:08d}-0000-0000-000000000000",
            session_id=f"session-{i // 3:08d}", channel="web", entry_id="bannerShipping",
            variant_entry_id="bannerShippingFree", experience="banner-shipping-test", variant=1,
            is_control=False, holdout=False, propensity=0.3135, model_version="seg-20250601-abcdef",
            segments={"price_sensitive": 0.41, "high_intent": 0.73, "loyal": 0.12}, country="US",
            device="mobile",
        )
        for i in range(n)
    ]


async def _vary(redis: Any, exposures: list[Any], stream: str, spool_dir: Path) -> dict[str, Any]:
    from personalization.store.exposures import ExposureWriter
    from personalization.store.journal import Journal
    from personalization.store.spool import Spool

    writer = ExposureWriter(
        redis, stream=stream, batch_size=BATCH, spool=Spool(spool_dir / "bench.spool"), journal=Journal(spool_dir, "bench")
    )
    writer.start()
    start = time.perf_counter()
    for i in range(0, len(exposures), 3):
        batch = exposures[i : i + 3]
        writer.submit(batch, [(e.visitor_id, f"bench-experience-{j}", 1) for j, e in enumerate(batch)])
        if i % 96 == 0:
            await asyncio.sleep(0)
            # Sustained load, not a burst: keep the queue below its bound (50,000 by default) so the
            # rate measured is the writer's, and nothing overflows to the spool.
            while writer.pending > 20_000:
                await asyncio.sleep(0.001)
    await writer.flush(timeout=120)
    elapsed = time.perf_counter() - start
    await writer.close()
    return {"elapsed": elapsed, "written": writer.written, "dropped": writer.dropped, "spooled": writer.spooled}


async def _raw(redis: Any, exposures: list[Any], stream: str) -> dict[str, Any]:
    from personalization.types import EXPOSURE_ENCODER

    encode = EXPOSURE_ENCODER.encode
    start = time.perf_counter()
    for i in range(0, len(exposures), BATCH):
        pipe = redis.pipeline(transaction=False)
        for exposure in exposures[i : i + BATCH]:
            pipe.xadd(stream, {"data": encode(exposure)})
        await pipe.execute()
    return {"elapsed": time.perf_counter() - start, "written": len(exposures), "dropped": 0, "spooled": 0}


async def _measure(url: str, n: int, rounds: int) -> dict[str, Any]:
    from redis.asyncio import Redis

    from personalization.store.keys import profile_key

    redis = Redis.from_url(url)
    exposures = _exposures(n)
    results: dict[str, list[dict[str, Any]]] = {"vary": [], "raw": []}
    with tempfile.TemporaryDirectory(prefix="vary-bench-spool-") as spool:
        try:
            for r in range(rounds):
                order = ("raw", "vary") if r % 2 == 0 else ("vary", "raw")
                for side in order:
                    stream = f"bench:exposures:{side}:{r}"
                    await redis.delete(stream)
                    if side == "vary":
                        res = await _vary(redis, exposures, stream, Path(spool))
                    else:
                        res = await _raw(redis, exposures, stream)
                    res["in_stream"] = int(await redis.xlen(stream))
                    await redis.delete(stream)
                    results[side].append(res)
            await redis.delete(*[profile_key(e.visitor_id) for e in exposures[::3]])
        finally:
            await redis.aclose()
    return results


def run(url: str, quick: bool = False) -> list[dict[str, Any]]:
    n, rounds = (12_000, 2) if quick else (60_000, 5)
    results = asyncio.run(_measure(url, n, rounds))
    rates = {side: [n / r["elapsed"] for r in runs] for side, runs in results.items()}
    lost = [n - r["in_stream"] for r in results["vary"]]
    problems = [r for r in results["vary"] if r["dropped"] or r["spooled"] or r["in_stream"] != n]
    vary, raw = spread(rates["vary"]), spread(rates["raw"])
    return [
        comparison(
            "exposure logging: ExposureWriter vs raw pipelined XADD", "exposures", "exposures/s",
            vary["median"], raw["median"], TARGET, target_on="ratio", better="higher",
            vary_spread=vary, baseline_spread=raw, exposures_per_round=n, rounds=rounds,
            lost=sum(lost), zero_loss=not problems and sum(lost) == 0,
            method=(f"{n} exposures per round, 3 per submit, each with a sticky assignment (HSETNX), batches of {BATCH}; "
                    "baseline: XADD pipelines of 500, no transaction; alternating rounds, median"),
        )
    ]
