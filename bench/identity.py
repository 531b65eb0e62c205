"""Benchmark: what a link costs a decision — the profile read of a linked id against an unlinked one.

A linked id's profile names its person (:mod:`personalization.store.identity`), so its read is two
round trips (the id's hashes, then the person's) where an unlinked id's is one. This measures both
on the embedded Valkey, two ways: one read at a time (``coalesce=False``: the latency one decision
waits) and 64 concurrent reads through the coalescing store (what a busy worker pays per read).

Run: ``python -m bench.identity [--reads N]``. Results go to ``bench/results/identity.json`` and a
markdown table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from api.embedded.valkey import EmbeddedRedis
from bench.common import RESULTS_DIR, machine
from personalization.store.identity import link
from personalization.store.keys import history_key, profile_key, traits_key
from personalization.store.profiles import RedisProfileStore

__all__ = ["RESULTS", "main", "run"]

RESULTS = RESULTS_DIR / "identity.json"
_CONCURRENT = 64


async def _seed(redis: Redis, n: int) -> None:
    for i in range(n):
        for visitor in (f"plain-{i}", f"linked-{i}"):
            await redis.hset(profile_key(visitor), mapping={"visits": 3, "first_seen": 100, "last_seen": 200,
                                                            "ch:web": 1, "a:hero": 1, "g:buy": 1})
            await redis.hset(history_key(visitor), mapping={"p:/home": "2 150 190", "e:signup": "1 170"})
            await redis.hset(traits_key(visitor), mapping={"plan": '"pro"', "seats": "5"})
        await link(redis, f"linked-{i}", f"user-{i}", ttl_s=3600)


async def _one_at_a_time(store: RedisProfileStore, prefix: str, n: int) -> list[float]:
    took = []
    for i in range(n):
        start = time.perf_counter()
        await store.load(f"{prefix}-{i % 100}")
        took.append((time.perf_counter() - start) * 1e6)
    return took


async def _concurrent(store: RedisProfileStore, prefix: str, n: int) -> float:
    """µs per read with ``_CONCURRENT`` reads in flight."""
    start = time.perf_counter()
    for first in range(0, n, _CONCURRENT):
        await asyncio.gather(*(store.load(f"{prefix}-{i % 100}") for i in range(first, first + _CONCURRENT)))
    return (time.perf_counter() - start) * 1e6 / n


async def run(reads: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        server = EmbeddedRedis(Path(directory), appendonly=False)
        server.start()
        redis = Redis.from_url(server.url)
        try:
            await _seed(redis, 100)
            single = RedisProfileStore(redis, coalesce=False)
            coalesced = RedisProfileStore(redis)
            out: dict[str, object] = {"machine": machine(), "reads": reads}
            for prefix in ("plain", "linked"):
                await _one_at_a_time(single, prefix, 200)  # warm up
                took = await _one_at_a_time(single, prefix, reads)
                out[prefix] = {
                    "median_us": round(statistics.median(took), 1),
                    "p99_us": round(statistics.quantiles(took, n=100)[98], 1),
                    "concurrent_us_per_read": round(await _concurrent(coalesced, prefix, reads), 1),
                }
            return out
        finally:
            await redis.aclose()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=5000)
    args = parser.parse_args()
    result = asyncio.run(run(args.reads))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| profile read | median µs | p99 µs | µs/read, 64 in flight |\n|---|---|---|---|")
    for prefix in ("plain", "linked"):
        row = result[prefix]
        assert isinstance(row, dict)
        print(f"| {prefix} | {row['median_us']} | {row['p99_us']} | {row['concurrent_us_per_read']} |")


if __name__ == "__main__":
    main()
