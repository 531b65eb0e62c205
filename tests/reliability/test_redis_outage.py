"""Redis dies under load and comes back: Vary keeps answering, and loses and duplicates nothing.

20,000 personalize requests over 32 concurrent keep-alive connections on loopback to the real ``vary serve``
process; the Valkey server is SIGKILLed after 5,000 answers and started again (same port, same
append-only file) after 10,000. Every answer must be a 200, and once the spool has been replayed the
exposures in Redis must be exactly the ones the clients were given (compared by exposure id).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
import pytest
import redis

from api.embedded.valkey import EmbeddedRedis
from tests.e2e.servers import VaryProcess, free_port
from tests.reliability.load import (
    DELIVERY_KEY,
    Answer,
    Load,
    global_exposures,
    missing_story,
    per_entry,
    stored_exposures,
    writer_story,
)
from tests.system_packages import ensure_package

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TOTAL = 20_000
KILL_AT = 5_000
RESTART_AT = 10_000
CONCURRENCY = 32


def _strace() -> str:
    return ensure_package("strace", lambda: shutil.which("strace"))


@contextmanager
def _slow_fsync(port: int, delay_s: float) -> Iterator[None]:
    """Every ``fsync``/``fdatasync`` of the Valkey on ``port`` takes ``delay_s`` longer (strace's fault
    injection): a slow disk. With ``appendfsync everysec`` Valkey then holds writes it has already
    acknowledged in memory while the previous fsync runs (aof.c, "postpone the write")."""
    with redis.Redis(port=port) as client:
        pid = int(client.info("server")["process_id"])
    tracer = subprocess.Popen(
        [_strace(), "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-p", str(pid), "-e", "trace=fsync,fdatasync",
         "-e", f"inject=fsync,fdatasync:delay_enter={int(delay_s * 1_000_000)}"],
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # attached
    assert tracer.poll() is None, tracer.stderr.read() if tracer.stderr else ""
    try:
        yield
    finally:
        tracer.kill()
        tracer.communicate()


def test_redis_killed_and_restarted_under_load(tmp_path: Path) -> None:
    _killed_and_restarted(tmp_path)


def test_redis_on_a_slow_disk_killed_under_load_loses_nothing(tmp_path: Path) -> None:
    """The same with Valkey's fsync slowed to 0.9 s: the kill lands while Valkey holds acknowledged
    writes in memory, which it loses; each worker sends the batches it holds again once it sees the
    restarted server's new run_id (personalization/store/recent_batches.py). A CI run lost 56 of
    20,000 requests' exposures this way before that."""
    _killed_and_restarted(tmp_path, fsync_delay_s=0.9)


def _killed_and_restarted(tmp_path: Path, fsync_delay_s: float | None = None) -> None:
    port = free_port()
    valkey = EmbeddedRedis(tmp_path / "valkey", port=port)
    valkey.start()
    slow = _slow_fsync(port, fsync_delay_s) if fsync_delay_s is not None else nullcontext()
    vary = VaryProcess(
        {
            "VARY_REDIS_URL": f"redis://127.0.0.1:{port}",
            "VARY_DELIVERY_KEYS": DELIVERY_KEY,
            "VARY_ADMIN_KEYS": "rel-admin",
            "VARY_AGGREGATE": "false",
            "VARY_CONTENT_POLL_S": "0",
            "VARY_PROFILE_TIMEOUT_S": "0.05",
            "VARY_ACCESS_LOG": "false",  # timed from this process: no log line per request through its pipe
            # Explicitly above the load's rate (limiter on): during the outage and right after the restart
            # Vary skips the profile read (breaker open) and can serve more than the default 5,000 req/s
            # per key on a fast machine; the limit then answers 429 correctly (issue 22).
            "VARY_RATE_LIMIT_DELIVERY_PER_S": "1000000",
        },
        tmp_path / "vary",
    )
    try:
        vary.wait_ready()
        load = Load(vary.base, CONCURRENCY)
        marks: dict[str, float] = {}  # when the faults happened (time.monotonic()), for a failure message
        kill_event = asyncio.Event()
        restart_event = asyncio.Event()

        def on_answer(answer: Answer, answered: int) -> None:
            if answered == KILL_AT:
                kill_event.set()
            if answered == RESTART_AT:
                restart_event.set()

        async def chaos() -> None:
            await kill_event.wait()
            marks["killed"] = time.monotonic()
            valkey.kill()
            await restart_event.wait()
            marks["restarting"] = time.monotonic()
            await asyncio.to_thread(valkey.start)
            marks["restarted"] = time.monotonic()

        started = time.monotonic()
        with slow:
            asyncio.run(load.run(total=TOTAL, on_answer=on_answer, alongside=(chaos(),)))
        elapsed = time.monotonic() - started
        assert load.statuses == {200: TOTAL}, (load.statuses, vary.output())
        assert load.connects == CONCURRENCY  # no connection was dropped
        degraded = sum(a.degraded for a in load.answers)
        assert degraded > 0  # decisions during the outage were made without the profile
        answers = load.exposures()

        logged = stored_exposures(port, len(answers))
        stored = per_entry(logged)
        story = ""  # how the missing exposures travelled, worked out only when some are missing
        if global_exposures(logged) != TOTAL or set(stored) != set(answers):
            story = missing_story(load, set(answers) - set(stored), marks) + "\n" + writer_story(vary.log)
        # The global holdout's own exposure: one per request answered, none lost either.
        assert global_exposures(logged) == TOTAL, (global_exposures(logged), TOTAL, story)
        assert len(stored) == len(set(stored)), "an exposure was written twice"
        assert set(stored) == set(answers), (len(stored), len(answers), story)
        resent = httpx.get(f"{vary.base}/ready", timeout=5).json()["exposures_resent"]
        print(f"\n{TOTAL} requests in {elapsed:.1f} s, {degraded} degraded, {len(stored)} exposures reconciled, "
              f"{resent} sent again after the restart (this worker)")
    finally:
        vary.stop()
        valkey.stop()
