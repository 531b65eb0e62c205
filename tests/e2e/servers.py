"""Starting real ``vary serve`` processes for end-to-end tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from personalization.store.keys import EVENTS, EXPOSURES
from personalization.store.partitions import all_streams


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VaryProcess:
    """One ``vary serve`` child process; its output is kept in ``log`` for failure messages."""

    def __init__(self, env: Mapping[str, str], data_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VARY_")}
        full_env.update({"VARY_PORT": str(self.port), "VARY_DATA_DIR": str(data_dir), **env})
        vary = Path(sys.executable).with_name("vary")
        self.process = subprocess.Popen(
            [str(vary), "serve"], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.log: list[str] = []
        self.redis_url: str | None = None
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            match = re.search(r"embedded Valkey at (redis://\S+)", line)
            if match:
                self.redis_url = match.group(1)
            if "Application startup complete" in line:
                self._started.set()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("vary serve exited:\n" + self.output())
            if self._started.is_set():
                try:
                    if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise AssertionError("vary serve not ready in time:\n" + self.output())

    def output(self) -> str:
        return "".join(self.log[-80:])

    def stop(self) -> int:
        self.process.terminate()
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


@contextmanager
def running(env: Mapping[str, str], data_dir: Path) -> Iterator[VaryProcess]:
    """A ready ``vary serve`` for a fixture's lifetime, stopped however the test ends."""
    process = VaryProcess(env, data_dir)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def aggregation_settled(store: redis.Redis, partitions: int = 1, group: str = "vary-aggregate") -> bool:
    """Every exposure and event stream exists and its aggregation group has read and acknowledged
    every entry (no lag, nothing pending): the results API now counts everything written."""
    for stream in all_streams(EXPOSURES, partitions) + all_streams(EVENTS, partitions):
        if not store.exists(stream):
            return False
        groups = {g["name"]: g for g in store.xinfo_groups(stream)}
        found = groups.get(group)
        if found is None or found["pending"] or found.get("lag"):
            return False
    return True
