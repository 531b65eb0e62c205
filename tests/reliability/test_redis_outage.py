"""Redis dies under load and comes back: Vary keeps answering, and loses and duplicates nothing.

20,000 personalize requests over 32 concurrent connections on loopback to the real ``vary serve``
process; the Valkey server is SIGKILLed after 5,000 answers and started again (same port, same
append-only file) after 10,000. Every answer must be a 200, and once the spool has been replayed the
exposures in Redis must be exactly the ones the clients were given (compared by exposure id).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import redis

from api.embedded_redis import EmbeddedRedis
from personalization.types import EXPOSURE_DECODER
from tests.e2e.servers import VaryProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TOTAL = 20_000
KILL_AT = 5_000
RESTART_AT = 10_000
CONCURRENCY = 32


def test_redis_killed_and_restarted_under_load(tmp_path: Path) -> None:
    port = free_port()
    valkey = EmbeddedRedis(tmp_path / "valkey", port=port)
    valkey.start()
    vary = VaryProcess(
        {
            "VARY_REDIS_URL": f"redis://127.0.0.1:{port}",
            "VARY_DELIVERY_KEYS": "rel-delivery",
            "VARY_ADMIN_KEYS": "rel-admin",
            "VARY_AGGREGATE": "false",
            "VARY_CONTENT_POLL_S": "0",
            "VARY_PROFILE_TIMEOUT_S": "0.05",
        },
        tmp_path / "vary",
    )
    try:
        vary.wait_ready()
        answers: dict[str, int] = {}
        statuses: dict[int, int] = {}
        degraded = 0
        done = 0
        kill_event = asyncio.Event()
        restart_event = asyncio.Event()

        async def worker(client: httpx.AsyncClient, ids: list[int]) -> None:
            nonlocal done, degraded
            for i in ids:
                body = {"visitor": {"id": f"rel-{i % 5000}", "country": "US"}, "entries": ["heroHome", "bannerShipping", "bannerNewsletter"]}
                response = await client.post("/v1/personalize", json=body)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    data = response.json()
                    degraded += data["degraded"]
                    for entry in data["entries"]:
                        answers[entry["exposure_id"]] = i
                done += 1
                if done == KILL_AT:
                    kill_event.set()
                if done == RESTART_AT:
                    restart_event.set()

        async def chaos() -> None:
            await kill_event.wait()
            valkey.kill()
            await restart_event.wait()
            await asyncio.to_thread(valkey.start)

        async def drive() -> None:
            limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
            headers = {"Authorization": "Bearer rel-delivery"}
            async with httpx.AsyncClient(base_url=vary.base, limits=limits, headers=headers, timeout=10) as client:
                chunks = [list(range(w, TOTAL, CONCURRENCY)) for w in range(CONCURRENCY)]
                await asyncio.gather(chaos(), *(worker(client, chunk) for chunk in chunks))

        started = time.monotonic()
        asyncio.run(drive())
        elapsed = time.monotonic() - started
        assert statuses == {200: TOTAL}, (statuses, vary.output())
        assert degraded > 0  # decisions during the outage were made without the profile

        store = redis.Redis(port=port)
        deadline = time.monotonic() + 60
        stored: list[str] = []
        while time.monotonic() < deadline:
            stored = [EXPOSURE_DECODER.decode(f[b"data"]).id for _, f in store.xrange("vary:exposures")]
            if len(stored) >= len(answers):
                break
            time.sleep(0.5)
        assert len(stored) == len(set(stored)), "an exposure was written twice"
        assert set(stored) == set(answers), (len(stored), len(answers), vary.output())
        print(f"\n{TOTAL} requests in {elapsed:.1f} s, {degraded} degraded, {len(stored)} exposures reconciled")
        store.close()
    finally:
        vary.stop()
        valkey.stop()
