"""The exposure journal: what ``submit`` accepted survives the process being killed, exactly once.

The kill is real: a child process writes exposures through an :class:`ExposureWriter` with a
journal against the real Valkey, reports each exposure id once ``submit`` has returned (the moment a
request would be answered), and is SIGKILLed mid-stream. A new writer then replays the journal the
child left: every reported exposure is in Redis, none twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from redis.asyncio import Redis

from personalization.store.exposures import EXPOSURE_STREAM, ExposureWriter
from personalization.types import new_exposure_id
from personalization.store.journal import Journal
from personalization.store.spool import orphaned_spools
from personalization.types import EXPOSURE_DECODER, Exposure


def _exposure(i: int) -> Exposure:
    return Exposure(
        id=new_exposure_id(), ts=float(i), visitor_id=f"v{i % 7}", session_id=None, channel="web",
        entry_id="hero", variant_entry_id="hero", experience="exp", variant=i % 2, is_control=i % 2 == 0,
        holdout=False, propensity=0.5,
    )


async def _stored(redis: Redis, stream: str = EXPOSURE_STREAM) -> list[str]:
    return [EXPOSURE_DECODER.decode(fields[b"data"]).id for _, fields in await redis.xrange(stream)]


async def _replay_orphans(redis: Redis, directory: Path, stream: str) -> int:
    writer = ExposureWriter(redis, stream=stream)
    replayed = 0
    for spool in orphaned_spools(directory):
        replayed += await writer.replay(spool)
        spool.close()
    return replayed


_CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from redis.asyncio import Redis
    from personalization.store.exposures import ExposureWriter
    from personalization.types import new_exposure_id
    from personalization.store.journal import Journal
    from personalization.types import Exposure

    url, directory, stream = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    async def main():
        redis = Redis.from_url(url)
        writer = ExposureWriter(redis, stream=stream, batch_size=64, journal=Journal(directory, "child"))
        writer.start()
        for i in range(100_000):
            exposure = Exposure(
                id=new_exposure_id(), ts=float(i), visitor_id=f"v{i % 50}", session_id=None, channel="web",
                entry_id="hero", variant_entry_id="hero", experience="exp", variant=i % 2,
                is_control=i % 2 == 0, holdout=False, propensity=0.5,
            )
            writer.submit([exposure])
            sys.stdout.write(exposure.id + "\\n")  # acknowledged: submit returned
            sys.stdout.flush()
            if i % 16 == 0:
                await asyncio.sleep(0)  # let the writer send batches, as a server's loop would
            if i == int(sys.argv[4]):
                os.kill(os.getpid(), signal.SIGKILL)  # mid-stream: batches queued, on the wire, written

    asyncio.run(main())
    """
)


def test_a_killed_writer_loses_no_acknowledged_exposure_and_writes_none_twice(redis_url: str, tmp_path: Path) -> None:
    stream = f"vary:test:journal:{os.getpid()}"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, redis_url, str(tmp_path), stream, "3000"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[3],
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    acknowledged = child.stdout.split()
    assert len(acknowledged) == 3001

    async def body() -> tuple[list[str], list[str], int]:
        redis = Redis.from_url(redis_url)
        try:
            before = await _stored(redis, stream)
            replayed = await _replay_orphans(redis, tmp_path, stream)
            return before, await _stored(redis, stream), replayed
        finally:
            await redis.delete(stream)
            await redis.aclose()

    before, after, replayed = asyncio.run(body())
    assert len(before) < len(acknowledged)  # the kill did leave exposures only in the journal
    assert set(acknowledged) <= set(after)  # all of them are in Redis now
    assert len(after) == len(set(after))  # none twice: batches already written were skipped
    assert replayed == len(after) - len(before)
    assert not list(tmp_path.glob("*.spool"))  # replayed journals are removed


def test_a_batch_written_before_the_kill_is_skipped_on_replay(redis_url: str, tmp_path: Path) -> None:
    """The kill falls between a batch reaching Redis and the journal hearing of it: the journal
    still holds the batch, under its id, and the replay writes nothing twice. (The journal is told
    nothing here because the writer never runs: ``_send`` is the write it would have made.)"""
    stream = f"vary:test:journal-skip:{os.getpid()}"

    async def body() -> tuple[list[str], list[Exposure], int]:
        redis = Redis.from_url(redis_url)
        journal = Journal(tmp_path, "skip")
        writer = ExposureWriter(redis, stream=stream, batch_size=4, journal=journal)
        exposures = [_exposure(i) for i in range(10)]
        for exposure in exposures:
            writer.submit([exposure])  # batches of 4, 4 and an open one of 2
        batch_id, batch = writer._take_oldest()
        await writer._send(batch_id, batch)  # reached Redis; the process dies before done()
        journal.close()
        try:
            replayed = await _replay_orphans(redis, tmp_path, stream)
            return await _stored(redis, stream), exposures, replayed
        finally:
            await redis.delete(stream)
            await redis.aclose()

    stored, exposures, replayed = asyncio.run(body())
    assert stored == [e.id for e in exposures]  # in order, once each
    assert replayed == 6


def test_done_batches_leave_nothing_behind_and_full_rings_are_deleted(redis_url: str, tmp_path: Path) -> None:
    stream = f"vary:test:journal-rings:{os.getpid()}"

    async def body() -> tuple[int, list[str], int]:
        redis = Redis.from_url(redis_url)
        journal = Journal(tmp_path, "seg", ring_bytes=2_000)
        writer = ExposureWriter(redis, stream=stream, batch_size=8, journal=journal)
        writer.start()
        most = 0
        try:
            for i in range(400):
                writer.submit([_exposure(i)])
                most = max(most, len(list(tmp_path.glob("journal-seg-*.ring"))))
                if i % 50 == 0:
                    await asyncio.sleep(0)
            await writer.flush()
            left = sorted(path.name for path in tmp_path.glob("journal-seg-*.ring"))
            size = journal.size
            await writer.close()
            assert len(await _stored(redis, stream)) == 400
            return most, left, size
        finally:
            await redis.delete(stream)
            await redis.aclose()

    most, left, size = asyncio.run(body())
    assert most > 1  # 50 records of ~300 bytes waited at once: more than a 2 kB ring holds
    assert len(left) == 1 and size == 0  # once written, only the live ring is left, empty
    assert not list(tmp_path.glob("*.ring")) and not list(tmp_path.glob("*.spool"))  # closing removes it
