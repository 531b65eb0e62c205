"""Shared pieces of the benchmarks: the machine, timing, result records, starting servers.

Every comparison is one dict ``{"name", "section", "unit", "vary", "baseline", "ratio", "target",
"target_on", "better", "met", ...}``:

* ``ratio`` is always ``vary / baseline`` in the comparison's unit;
* ``target_on`` says what the target bounds: ``"ratio"`` (e.g. throughput ≥ 0.5× the echo app's) or
  ``"vary"`` (an absolute bound on Vary's number, e.g. p99 ≤ 15 ms);
* ``better`` is ``"higher"`` (the value must be ≥ target) or ``"lower"`` (≤ target);
* ``met`` is the verdict.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.scoring import _cpu_model, time_per_call

__all__ = [
    "ROOT",
    "RESULTS_DIR",
    "machine",
    "load_average",
    "comparison",
    "spread",
    "time_per_call",
    "free_port",
    "Server",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return []


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the relative spread ``(max - min) / median`` of repeated measurements."""
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / med if med else 0.0,
        "n": len(values),
    }


def comparison(
    name: str,
    section: str,
    unit: str,
    vary: float,
    baseline: float | None,
    target: float,
    *,
    target_on: str = "ratio",
    better: str = "higher",
    **detail: Any,
) -> dict[str, Any]:
    ratio = vary / baseline if baseline else None
    value = ratio if target_on == "ratio" else vary
    met = None if value is None else (value >= target if better == "higher" else value <= target)
    return {
        "name": name,
        "section": section,
        "unit": unit,
        "vary": vary,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "target_on": target_on,
        "better": better,
        "met": met,
        **detail,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server child process in its own session, stopped (with its workers) by its process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        port: int,
        log_path: Path,
        ready: Callable[[int], bool],
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self._ready = ready
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(argv), env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if self._ready(self.port):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=5)
        # Workers of a master that exited first would linger in the group: make sure they are gone.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
