"""Vary is SIGKILLed under load and restarted: everything it acknowledged is in Redis exactly once.

Personalize requests over 24 concurrent connections on loopback to the real ``vary serve`` process
(Redis up the whole time: a real Valkey with its append-only file). After about half the requests
have been answered the Vary process is SIGKILLed — no shutdown, no flush. Requests in flight then
fail with connection errors: they were never acknowledged and are not counted. A new ``vary serve``
is started on the same data dir and port; it replays what the killed worker left — its exposure
journal (every request's exposures, written to the OS before they were queued) and its spool, if
any — and more requests are served. Then every exposure id a client received in a 200 must be in
``vary:exposures`` exactly once. (With an in-memory queue alone, about 20 of 4,000 acknowledged
exposures were lost here: the ones between the answer and their batch write.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
import redis

from api.embedded.valkey import EmbeddedRedis
from personalization.types import EXPOSURE_DECODER
from tests.e2e.servers import VaryProcess, free_port
from tests.reliability.http1 import ConnectionDropped, KeepAliveConnection

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

BEFORE = 2_000  # answers before the kill
BUDGET = 4_000  # most requests sent to the first process
AFTER = 1_000  # requests to the restarted process
CONCURRENCY = 24


def _env(redis_port: int) -> dict[str, str]:
    return {
        "VARY_REDIS_URL": f"redis://127.0.0.1:{redis_port}",
        "VARY_DELIVERY_KEYS": "kill-delivery",
        "VARY_ADMIN_KEYS": "kill-admin",
        "VARY_AGGREGATE": "false",
        "VARY_CONTENT_POLL_S": "0",
    }


def _kill(vary: VaryProcess) -> None:
    """SIGKILL (``VaryProcess.stop`` sends SIGTERM, which would drain the writer)."""
    vary.process.kill()
    vary.process.wait(timeout=10)
    vary._reader.join(timeout=5)
    if vary.process.stdout is not None:
        vary.process.stdout.close()


async def _drive(base: str, ids: range, answers: dict[str, int], stats: dict[str, int], on_answer=None) -> None:  # noqa: ANN001
    """Send ``ids`` as personalize requests, one keep-alive connection per worker; record exposure
    ids of 200s. Stops a worker at its first dropped connection (the server is gone)."""
    gone = asyncio.Event()

    async def worker(chunk: list[int]) -> None:
        connection = KeepAliveConnection.to(base, {"Authorization": "Bearer kill-delivery"})
        try:
            for i in chunk:
                if gone.is_set():
                    return
                body = {"visitor": {"id": f"kill-{i % 3000}", "country": "US"}, "entries": ["heroHome", "bannerShipping"]}
                try:
                    reply = await connection.post("/v1/personalize", msgspec.json.encode(body))
                except ConnectionDropped:
                    stats["unacknowledged"] += 1
                    gone.set()
                    return
                stats[str(reply.status)] = stats.get(str(reply.status), 0) + 1
                if reply.status == 200:
                    for entry in msgspec.json.decode(reply.body)["entries"]:
                        answers[entry["exposure_id"]] = i
                    stats["answered"] += 1
                    if on_answer is not None:
                        on_answer(stats["answered"])
        finally:
            connection.close()

    await asyncio.gather(*(worker(list(ids[w::CONCURRENCY])) for w in range(CONCURRENCY)))


def test_vary_sigkilled_under_load_and_restarted(tmp_path: Path) -> None:
    redis_port = free_port()
    valkey = EmbeddedRedis(tmp_path / "valkey", port=redis_port)
    valkey.start()
    data_dir = tmp_path / "vary"
    first = VaryProcess(_env(redis_port), data_dir)
    second: VaryProcess | None = None
    try:
        first.wait_ready()
        before: dict[str, int] = {}
        stats = {"answered": 0, "unacknowledged": 0}

        def maybe_kill(answered: int) -> None:
            if answered == BEFORE:
                first.process.kill()  # SIGKILL from inside the load, while requests are in flight

        started = time.monotonic()
        asyncio.run(_drive(first.base, range(BUDGET), before, stats, maybe_kill))
        _kill(first)
        assert first.process.returncode == -9, first.output()
        assert stats["answered"] >= BEFORE, (stats, first.output())
        spool_files = {p.name: p.stat().st_size for p in (data_dir / "spool").glob("*.spool")}

        second = VaryProcess(_env(redis_port), data_dir, port=first.port)
        second.wait_ready()
        after: dict[str, int] = {}
        stats_after = {"answered": 0, "unacknowledged": 0}
        asyncio.run(_drive(second.base, range(BUDGET, BUDGET + AFTER), after, stats_after))
        assert stats_after["answered"] == AFTER and stats_after["unacknowledged"] == 0, (stats_after, second.output())

        store = redis.Redis(port=redis_port)
        wanted = set(before) | set(after)
        deadline = time.monotonic() + 20
        stored: list[str] = []
        while time.monotonic() < deadline:
            stored = [EXPOSURE_DECODER.decode(f[b"data"]).id for _, f in store.xrange("vary:exposures")]
            if wanted <= set(stored):
                break
            time.sleep(0.25)
        store.close()
        elapsed = time.monotonic() - started
        found = wanted & set(stored)
        lost_before = set(before) - set(stored)
        lost_after = set(after) - set(stored)
        duplicated = len(stored) - len(set(stored))
        report = (
            f"acknowledged before kill={len(before)} (requests {stats}), after restart={len(after)}; "
            f"found={len(found)}, lost before kill={len(lost_before)}, lost after restart={len(lost_after)}, "
            f"duplicated={duplicated}, stored={len(stored)}, spool files (bytes) left by the killed worker={spool_files}"
        )
        print(f"\n{report}; {elapsed:.1f} s")
        assert duplicated == 0, report
        assert not lost_before and not lost_after, report + "\n" + second.output()
    finally:
        if first.process.poll() is None:
            first.stop()
        if second is not None:
            second.stop()
        valkey.stop()
