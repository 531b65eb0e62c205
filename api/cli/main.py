"""The ``vary`` command: ``vary serve``, ``vary train``, ``vary models``, ``vary evaluate``, ``vary sync``.

This module parses arguments and dispatches; the model commands (train, models, evaluate) live in
:mod:`api.cli.models`, the data commands (export, simulate) in :mod:`api.cli.data`.

``vary serve`` with no ``VARY_REDIS_URL`` starts the embedded Valkey first and stops it on exit, so
one command runs the whole service. Workers get the Redis URL through the environment, which is how
``uvicorn --workers`` passes configuration to the processes it forks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from api.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

log = logging.getLogger("vary")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """uvicorn re-raises the signal it shut down on; exiting normally lets ``finally`` stop Valkey."""
    raise SystemExit(0)


def _worker_app() -> object:
    """The app factory uvicorn calls in each worker: :func:`api.app.create_app_from_env`, after tying
    a forked worker's life to ``vary serve``'s (Linux ``PR_SET_PDEATHSIG``). With several workers a
    SIGKILLed ``vary serve`` would otherwise leave them serving on its port, owning their spools;
    now they die with it, and the next start replays what they spooled. One worker runs in the
    ``vary serve`` process itself and is left alone."""
    import multiprocessing

    if multiprocessing.parent_process() is not None and sys.platform == "linux":
        import ctypes
        import signal

        parent = multiprocessing.parent_process()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
            os._exit(1)
    from api.app import create_app_from_env

    return create_app_from_env()


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from api.http.auth import ensure_keys
    from api.embedded.valkey import EmbeddedRedis
    from api.runtime import ensure_model

    if args.no_sinks:
        os.environ["VARY_SINKS_IN_PROCESS"] = "false"
    if args.no_aggregate:
        os.environ["VARY_AGGREGATE"] = "false"
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded: EmbeddedRedis | None = None
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir)
        os.environ["VARY_REDIS_URL"] = embedded.start()
        print(f"vary: embedded Valkey at {embedded.url} (data in {settings.data_dir / 'redis'})", flush=True)
    try:
        # Keys and the demo model are made once here, not racing in every worker.
        _, _, generated = ensure_keys(settings.delivery_keys, settings.admin_keys, settings.data_dir)
        for scope, key in generated.items():
            print(f"vary: {scope} key: {key}", flush=True)
        ensure_model(settings)
        print(f"vary: serving on http://{host}:{port}  (OpenAPI: http://{host}:{port}/schema)", flush=True)
        uvicorn.run(
            "api.cli.main:_worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level,
            access_log=args.access_log,
            timeout_graceful_shutdown=10,
            # Longer than a load balancer's idle timeout (AWS ALB 60 s), so the proxy, not Vary,
            # closes idle connections: a server closing one just as a request arrives on it is a
            # dropped request (uvicorn's default is 5 s).
            timeout_keep_alive=75,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _aggregate(settings: Settings, args: argparse.Namespace) -> int:
    """The measurement consumer as its own process; SIGTERM/SIGINT finish the batch in hand and stop."""
    import asyncio
    import signal
    import socket

    from api.redis_client import async_redis
    from api.runtime import stream_retention
    from personalization.measurement.aggregation import Aggregator

    if not settings.redis_url:
        print("vary aggregate: set VARY_REDIS_URL to the Redis that `vary serve` uses", file=sys.stderr)
        return 2
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"

    async def run() -> None:
        redis = async_redis(settings)  # one server or a cluster
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        aggregator = Aggregator(
            redis, consumer=consumer, partitions=settings.stream_partitions,
            claim_idle_ms=settings.aggregate_claim_idle_ms,
        )
        await aggregator.ensure_groups()
        print(f"vary aggregate: consumer {consumer} reading {len(aggregator.streams)} streams", flush=True)
        retention = stream_retention(settings, redis)
        trimming = asyncio.create_task(retention.run_forever(stop)) if retention is not None else None
        try:
            await aggregator.run_forever(stop, claim_every_s=settings.aggregate_claim_every_s)
        finally:
            stop.set()
            if trimming is not None:
                await trimming
            await redis.aclose()

    asyncio.run(run())
    return 0


def _sinks(settings: Settings, args: argparse.Namespace) -> int:
    """The sink runners as their own process (api/plugins.py builds them); SIGTERM/SIGINT stop them."""
    import asyncio
    import signal
    import socket

    from api.plugins import load_plugins
    from api.redis_client import async_redis

    if not settings.redis_url:
        print("vary sinks: set VARY_REDIS_URL to the Redis that `vary serve` uses", file=sys.stderr)
        return 2
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"

    async def run() -> int:
        redis = async_redis(settings)
        runners = load_plugins().sink_runners(settings, redis, consumer)
        if not runners:
            print("vary sinks: no sink configured (VARY_SINK_WEBHOOK_URL, VARY_SINK_SEGMENT_WRITE_KEY or a "
                  "plugin's sinks)", file=sys.stderr)
            await redis.aclose()
            return 2
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        for runner in runners:
            await runner.ensure_groups()
        names = ", ".join(runner.sink.name for runner in runners)
        print(f"vary sinks: consumer {consumer} running {names}", flush=True)
        try:
            await asyncio.gather(*(runner.run_forever(stop) for runner in runners))
        finally:
            for runner in runners:
                await runner.aclose()
            await redis.aclose()
        return 0

    return asyncio.run(run())


def _sync(settings: Settings, args: argparse.Namespace) -> int:
    from api.runtime import content_source_for
    from content import compile_snapshot

    snapshot = compile_snapshot(content_source_for(settings).load())
    print(
        f"content {snapshot.version}: {len(snapshot.entries)} entries, "
        f"{len(snapshot.experiences)} experiences, {len(snapshot.issues)} issues"
    )
    for issue in snapshot.issues:
        print(f"  {issue.entry_id} ({issue.content_type}): {issue.problem} — fix: {issue.fix}")
    return 1 if snapshot.issues and args.strict else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vary", description="Self-hosted content personalization.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (starts an embedded Valkey without VARY_REDIS_URL)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument("--no-aggregate", action="store_true",
                       help="do not run the measurement consumer in-process (run `vary aggregate` instead)")
    serve.add_argument("--no-sinks", action="store_true",
                       help="do not run the event sinks in-process (run `vary sinks` instead)")
    sinks = sub.add_parser("sinks", help="run the event sinks (webhook, Segment, plugins') as their own process")
    sinks.add_argument("--consumer", help="consumer name in each sink's group (default: host-pid)")
    aggregate = sub.add_parser("aggregate", help="run the measurement consumer (exposures + events → results)")
    aggregate.add_argument("--consumer", help="consumer name in the group (default: host-pid)")
    train = sub.add_parser(
        "train",
        help="train the segment model (default: the bundled demo data) or a bandit policy",
        description=(
            "vary train [segments]: the segment model, from --data FILE (CSV/Parquet: ts, feature columns, "
            "segment:<name> 0/1 columns), from the logs (--from-events --goal G --days N), or the bundled "
            "demo data. vary train policy --experience KEY: a bandit's reward model from the exposure and "
            "event logs, or from --data FILE (logged-bandit feedback: context columns, action, propensity, "
            "reward). Saved under <data_dir>; registered in Redis too when VARY_REDIS_URL is set."
        ),
    )
    train.add_argument("target", nargs="?", default="segments", choices=["segments", "policy"])
    train.add_argument("--data", help="training file (.csv or .parquet)")
    train.add_argument("--from-events", action="store_true", help="segments: label visitors from logged conversions")
    train.add_argument("--goal", help="with --from-events: the goal a visitor converts on (label converted_<goal>)")
    train.add_argument("--days", type=float, default=7.0, help="with --from-events: conversion window (default 7)")
    train.add_argument("--experience", help="policy: the bandit experience key (names the registry slot)")
    train.add_argument("--window-days", type=float, default=7.0,
                       help="policy from the logs: a goal within this many days of the exposure is a reward (default 7)")
    train.add_argument("--random-state", type=int, default=0)
    train.add_argument("--activate", action=argparse.BooleanOptionalAction, default=True,
                       help="make the new model active (locally, and in the registry when VARY_REDIS_URL is set)")
    models = sub.add_parser("models", help="show or list trained models (local and, with VARY_REDIS_URL, the registry)")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    show = models_sub.add_parser("show", help="print a model's card: data, validation metrics, calibration")
    show.add_argument("version")
    models_sub.add_parser("list", help="list local and registered models")
    evaluate = sub.add_parser(
        "evaluate",
        help="off-policy evaluation of a bandit policy on logged traffic (IPS, SNIPS, DR)",
    )
    evaluate.add_argument("--model", required=True, help="the policy version to evaluate")
    evaluate.add_argument("--data", help="a logged-bandit file (.csv or .parquet); default: the Redis logs")
    evaluate.add_argument("--out", help="write the candidate's action probabilities for every logged row (CSV)")
    evaluate.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples (default 500)")
    evaluate.add_argument("--clip", type=float, help="clip importance weights at this value")
    evaluate.add_argument("--window-days", type=float, default=7.0,
                          help="from the logs: a goal within this many days of the exposure is a reward (default 7)")
    sync = sub.add_parser("sync", help="load and compile the content once; print content issues")
    sync.add_argument("--strict", action="store_true", help="exit 1 when there are content issues")
    from api.cli.data import add_data_parsers

    add_data_parsers(sub)
    from api.cli.content import add_cms_parser

    add_cms_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "cms":
        from api.cli.content import cms_command

        return cms_command(args)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"vary: {exc}", file=sys.stderr)
        return 2
    from api.cli.data import export_command, simulate_command, trim_command
    from api.cli.models import evaluate_command, models_command, train_command

    handlers = {
        "serve": _serve,
        "aggregate": _aggregate,
        "sinks": _sinks,
        "train": train_command,
        "models": models_command,
        "evaluate": evaluate_command,
        "sync": _sync,
        "export": export_command,
        "trim": trim_command,
        "simulate": simulate_command,
    }
    if args.command in ("train", "evaluate", "sync"):
        # Plugins' feature extractors and experience types count in training and compiling too.
        from api.plugins import load_plugins

        load_plugins().install()
    return handlers[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
