"""The embedded Valkey's append-only file after an erase (#17.4).

Before, ``DELETE /v1/visitors/{id}`` deleted the keys, but the AOF kept every write that had
carried the id until some later rewrite; now the erase asks the embedded server for a rewrite, and
the id is gone from every file under its data dir once it finishes. A real Valkey with AOF on.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis.asyncio import Redis

from api.embedded.valkey import EmbeddedRedis, rewrite_aof_after_erase
from personalization.store.erasure import erase_visitor
from personalization.store.keys import EXPOSURES, profile_key
from personalization.types import EXPOSURE_ENCODER, Exposure

GONE = "forget-me-aof-5c1"


def _files_mentioning(directory: Path, needle: str) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_erase_rewrites_the_embedded_aof_and_the_id_leaves_the_disk(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, appendonly=True)
    server.start()
    try:

        async def run() -> tuple[str, str]:
            async with Redis.from_url(server.url) as redis:
                exposure = Exposure(
                    id="x1", ts=1_780_000_000.0, visitor_id=GONE, session_id=None, channel="web",
                    entry_id="hero", variant_entry_id="hero", experience="exp", variant=0,
                    is_control=True, holdout=False, propensity=0.5,
                )
                await redis.xadd(EXPOSURES, {"data": EXPOSURE_ENCODER.encode(exposure)})
                await redis.hset(profile_key(GONE), mapping={"visits": 1, "country": "US"})
                await redis.set("other-data", "kept")
                erased = await erase_visitor(redis, GONE)
                assert erased.keys_deleted == 1 and erased.exposures_deleted == 1
                await asyncio.sleep(1.2)  # appendfsync everysec: the writes reach the file
                assert _files_mentioning(tmp_path / "redis", GONE)  # the fault: the AOF still has it
                status = await rewrite_aof_after_erase(redis, tmp_path)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    info = await redis.info("persistence")
                    if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                        break
                    await asyncio.sleep(0.05)
                assert await redis.get("other-data") == b"kept"
                elsewhere = await rewrite_aof_after_erase(redis, tmp_path / "not-vary")
                return status, elsewhere

        status, elsewhere = asyncio.run(run())
        assert status in {"started", "scheduled"}
        assert elsewhere == "external"  # not the server Vary embeds there: left to its operator
        time.sleep(0.2)
        assert _files_mentioning(tmp_path / "redis", GONE) == []
    finally:
        server.stop()


def test_the_embedded_server_rewrites_its_aof_at_the_chosen_growth(tmp_path: Path) -> None:
    """Issue 22: a rewrite every time the AOF doubled stalled the benchmark's tail (api/embedded/valkey.py);
    the running server has the chosen percentage, AOF on, and the compose file's Valkey the same."""
    from api.embedded.valkey import AOF_REWRITE_PERCENTAGE
    from tests.deploy.test_compose import _service

    with EmbeddedRedis(tmp_path, appendonly=True) as server:

        async def config() -> dict[str, str]:
            async with Redis.from_url(server.url, decode_responses=True) as redis:
                got: dict[str, str] = {}
                for name in ("auto-aof-rewrite-percentage", "appendonly", "appendfsync"):
                    got.update(await redis.config_get(name))
                return got

        got = asyncio.run(config())
    assert got == {"auto-aof-rewrite-percentage": str(AOF_REWRITE_PERCENTAGE), "appendonly": "yes", "appendfsync": "everysec"}
    command = _service("valkey")["command"]
    assert command[command.index("--auto-aof-rewrite-percentage") + 1] == str(AOF_REWRITE_PERCENTAGE)
