"""``vary serve``: the HTTP API under uvicorn, with the embedded Valkey when no Redis is configured.

Without ``VARY_REDIS_URL`` it starts the embedded Valkey first and stops it on exit, so one command
runs the whole service. Keys and the demo model are made once here, before any worker starts.

How the workers get their settings: uvicorn needs an import string and a factory to start several
workers (``api.cli.serve:_worker_app``), so a worker cannot be handed a Python object. ``vary serve``
resolves its :class:`~api.settings.Settings` once (the environment,
``--no-sinks``/``--no-aggregate``, the embedded Valkey's URL) and passes the whole value as JSON in
the one internal variable :data:`~api.settings.WORKER_SETTINGS_VARIABLE`
(:func:`~api.settings.handed_to_workers`), which only :func:`_worker_app` reads (through
:func:`~api.settings.worker_settings`). Spawned workers inherit it; it is removed again when
``vary serve`` returns. No user-facing ``VARY_*`` variable is written, so what a worker runs with is
exactly what ``vary serve`` resolved, and nothing leaks into the caller's environment.

Logs: one format for Vary, uvicorn and Litestar on stdout (``api/logging_config.py``: JSON lines
unless stdout is a terminal, or ``VARY_LOG_FORMAT``). Lines about the whole service (the embedded
Valkey, keys, the address) are logged once, by ``vary serve``; each worker's lines carry its ``pid``.
uvicorn's own access log stays off: ``vary.access`` (``api/logging_access.py``) replaces it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import msgspec

from api.settings import Settings, handed_to_workers, worker_settings

__all__ = ["add_serve_parser", "serve_command"]

log = logging.getLogger("vary")

#: The worker factory, as uvicorn imports it in every worker process.
WORKER_APP = "api.cli.serve:_worker_app"
#: Seconds a worker has to answer uvicorn's health ping (with ``--workers`` > 1) before it is replaced.
WORKER_HEALTHCHECK_S = 30.0


def add_serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``serve`` to the ``vary`` subcommands."""
    serve = sub.add_parser("serve", help="run the HTTP API (starts an embedded Valkey without VARY_REDIS_URL)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--access-log", action="store_true", default=None,
                       help="log every request (the default; VARY_ACCESS_LOG=false turns it off)")
    serve.add_argument("--no-access-log", action="store_false", dest="access_log",
                       help="no access log")
    serve.add_argument("--no-aggregate", action="store_true",
                       help="do not run the measurement consumer in-process (run `vary aggregate` instead)")
    serve.add_argument("--no-sinks", action="store_true",
                       help="do not run the event sinks in-process (run `vary sinks` instead)")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """uvicorn re-raises the signal it shut down on; exiting normally lets ``finally`` stop Valkey."""
    raise SystemExit(0)


def _worker_app() -> object:
    """The app factory uvicorn calls in each worker: :func:`api.app.create_app` with the settings
    ``vary serve`` handed over, after tying a forked worker's life to ``vary serve``'s (Linux
    ``PR_SET_PDEATHSIG``). With several workers a SIGKILLed ``vary serve`` would otherwise leave them
    serving on its port, owning their spools; now they die with it, and the next start replays what
    they spooled. One worker runs in the ``vary serve`` process itself and is left alone."""
    import multiprocessing

    if multiprocessing.parent_process() is not None and sys.platform == "linux":
        import ctypes
        import signal

        parent = multiprocessing.parent_process()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
            os._exit(1)
    from litestar import Litestar

    from api.app import create_app
    from api.logging_access import install_access_log
    from api.logging_config import configure_logging

    settings = worker_settings()
    app = create_app(settings, print_keys=False)
    configure_logging(settings.log_level, settings.log_format)  # again: Litestar set up its own handlers
    if settings.access_log and isinstance(app, Litestar):
        install_access_log(app)
    return app


def serve_command(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from api.embedded.valkey import EmbeddedRedis
    from api.http.auth import ensure_keys, keys_file
    from api.logging_config import configure_logging, uvicorn_log_config
    from api.metrics import multiprocess_dir
    from api.runtime import ensure_model
    from api.server import uvicorn_options

    if args.no_sinks:
        settings = msgspec.structs.replace(settings, sinks_in_process=False)
    if args.no_aggregate:
        settings = msgspec.structs.replace(settings, aggregate=False)
    if args.access_log is not None:
        settings = msgspec.structs.replace(settings, access_log=args.access_log)
    try:
        log_format = configure_logging(settings.log_level, settings.log_format)
    except ValueError as exc:
        print(f"vary: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded: EmbeddedRedis | None = None
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir)
        settings = msgspec.structs.replace(settings, redis_url=embedded.start())
        log.info("embedded Valkey at %s (data in %s)", embedded.url, settings.data_dir / "redis")
    try:
        # Keys and the demo model are made once here, not racing in every worker.
        _, _, generated = ensure_keys(settings.delivery_keys, settings.admin_keys, settings.data_dir)
        for scope, key in generated.items():  # printed once, when made; never again
            log.warning("%s key: %s", scope, key)  # warning: shown at VARY_LOG_LEVEL=warning too
        if not generated and not (settings.delivery_keys and settings.admin_keys):
            log.info("API keys are kept in %s", keys_file(settings.data_dir))
        ensure_model(settings)
        log.info("serving on http://%s:%s  (OpenAPI: http://%s:%s/schema)", host, port, host, port)
        # Every worker's metrics in <data dir>/metrics, emptied now (api/metrics.py).
        with handed_to_workers(settings), multiprocess_dir(settings.data_dir):
            uvicorn.run(
                WORKER_APP,
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=settings.log_level,
                access_log=False,  # vary.access instead (api/logging_access.py)
                log_config=uvicorn_log_config(settings.log_level, log_format),
                timeout_graceful_shutdown=10,
                # Longer than a load balancer's idle timeout (AWS ALB 60 s), so the proxy, not Vary,
                # closes idle connections: a server closing one just as a request arrives on it is a
                # dropped request (uvicorn's default is 5 s).
                timeout_keep_alive=75,
                # How long a worker may take to answer the supervisor's health ping before it is
                # killed and replaced. uvicorn's 5 s includes the worker's start (spawn, imports, the
                # snapshot and models): on a loaded machine that took longer, and every replacement
                # was killed in turn, so `vary serve` never came up. 30 s is gunicorn's worker timeout.
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
                # Header and body read deadlines (uvicorn has none) and a per-worker connection limit:
                # slow clients cannot hold connections open (api/server.py).
                **uvicorn_options(settings),
            )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
