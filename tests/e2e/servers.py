"""Starting real ``vary serve`` processes for end-to-end tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


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
