"""The ``vary`` command: ``vary serve``, ``vary train``, ``vary sync``.

``vary serve`` with no ``VARY_REDIS_URL`` starts the embedded Valkey first and stops it on exit, so
one command runs the whole service. Workers get the Redis URL through the environment, which is how
``uvicorn --workers`` passes configuration to the processes it forks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from api.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

log = logging.getLogger("vary")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """uvicorn re-raises the signal it shut down on; exiting normally lets ``finally`` stop Valkey."""
    raise SystemExit(0)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from api.auth import ensure_keys
    from api.embedded_redis import EmbeddedRedis
    from api.runtime import ensure_model

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
            "api.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level,
            access_log=args.access_log,
            timeout_graceful_shutdown=10,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _train(settings: Settings, args: argparse.Namespace) -> int:
    from personalization.demo_data import read_training_csv, train_demo_model
    from personalization.segment_model import save_model, train_segment_model

    directory = Path(settings.data_dir) / "models"
    directory.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        card = train_demo_model(directory)
    else:
        rows, labels, timestamps = read_training_csv(Path(args.data))
        pipeline, card = train_segment_model(rows, labels, timestamps, random_state=args.random_state)
        save_model(pipeline, card, directory)
    print(f"trained {card.version}: segments {', '.join(card.segments)}")
    for segment, metrics in card.metrics.items():
        print(f"  {segment}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return 0


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
    train = sub.add_parser("train", help="train the segment model (default: the bundled demo data)")
    train.add_argument("target", nargs="?", default="segments", choices=["segments"])
    train.add_argument("--data", help="CSV of features and segment:<name> label columns")
    train.add_argument("--random-state", type=int, default=0)
    sync = sub.add_parser("sync", help="load and compile the content once; print content issues")
    sync.add_argument("--strict", action="store_true", help="exit 1 when there are content issues")
    from content.installer_cli import add_cms_parser

    add_cms_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "cms":
        from content.installer_cli import cms_command

        return cms_command(args)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"vary: {exc}", file=sys.stderr)
        return 2
    handlers = {"serve": _serve, "train": _train, "sync": _sync}
    return handlers[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
