"""Debian packages a test needs (jemalloc, strace), installed the way CI installs Chromium for the
browser tests: with apt-get, as root, under a lock so parallel runs install once."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

__all__ = ["ensure_package"]

Found = TypeVar("Found")


def ensure_package(package: str, find: Callable[[], Found | None]) -> Found:
    """What ``find`` finds, after ``apt-get install <package>`` when it finds nothing; the test fails
    (saying what to run) where apt-get or root is missing."""
    found = find()
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail(f"this test needs {package}: run `apt-get install -y {package}` as root")
    with Path(f"/tmp/vary-{package}-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if find() is None:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run([apt, "update", "-qq"], check=False, env=env, capture_output=True, timeout=600)
            done = subprocess.run([apt, "install", "-y", "-qq", package], check=False, env=env, capture_output=True,
                                  text=True, timeout=600)
            if done.returncode != 0:
                pytest.fail(f"apt-get install {package} failed:\n{done.stderr[-2000:]}")
    found = find()
    assert found is not None, f"{package} installed but not found"
    return found
