"""The ``vary`` command: builds the parser from the sub-command modules and dispatches.

One module per group of sub-commands, each with its ``add_…_parser`` and its commands::

    serve.py      vary serve (uvicorn workers, the embedded Valkey)
    consumers.py  vary sinks, vary aggregate (the stream consumers as their own processes)
    train.py      vary train [segments|policy]
    models.py     vary models show|list (local model files and the registry)
    evaluate.py   vary evaluate (off-policy evaluation of a policy)
    content.py    vary sync, vary cms install
    data.py       vary trim, vary export, vary simulate
    common.py     what they share: error output, Redis for one command, tables

Every command but ``cms`` takes the :class:`~api.settings.Settings` read here once, and returns the
exit code: 0 ok, 1 the work failed, 2 a usage or setup problem (bad settings are a 2 as well).
Command modules import their heavy dependencies (scikit-learn, the app) only when they run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from api.cli.consumers import add_consumer_parsers, aggregate_command, sinks_command
from api.cli.content import add_cms_parser, add_sync_parser, cms_command, sync_command
from api.cli.data import add_data_parsers, export_command, simulate_command, trim_command
from api.cli.evaluate import add_evaluate_parser, evaluate_command
from api.cli.models import add_models_parser, models_command
from api.cli.serve import add_serve_parser, serve_command
from api.cli.train import add_train_parser, train_command
from api.settings import Settings, SettingsError, load_settings

__all__ = ["main", "build_parser"]

log = logging.getLogger("vary")

Command = Callable[[Settings, argparse.Namespace], int]

COMMANDS: dict[str, Command] = {
    "serve": serve_command,
    "aggregate": aggregate_command,
    "sinks": sinks_command,
    "train": train_command,
    "models": models_command,
    "evaluate": evaluate_command,
    "sync": sync_command,
    "export": export_command,
    "trim": trim_command,
    "simulate": simulate_command,
}

#: Plugins' feature extractors and experience types count in training and compiling too.
_NEED_PLUGINS = ("train", "evaluate", "sync")


def build_parser() -> argparse.ArgumentParser:
    """The ``vary`` parser; sub-commands in the order ``vary --help`` lists them."""
    parser = argparse.ArgumentParser(prog="vary", description="Self-hosted content personalization.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    add_consumer_parsers(sub)
    add_train_parser(sub)
    add_models_parser(sub)
    add_evaluate_parser(sub)
    add_sync_parser(sub)
    add_data_parsers(sub)
    add_cms_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "cms":
        return cms_command(args)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"vary: {exc}", file=sys.stderr)
        return 2
    if args.command != "serve":  # serve sets up its own (stdout, uvicorn, workers): api/cli/serve.py
        from api.logging_config import configure_logging

        try:  # the one log format (api/logging_config.py), on stderr: stdout is the command's output
            configure_logging(settings.log_level, settings.log_format, sys.stderr)
        except ValueError as exc:
            print(f"vary: {exc}", file=sys.stderr)
            return 2
    if args.command in _NEED_PLUGINS:
        from api.plugins import load_plugins

        args.plugins = load_plugins()  # the command hands them to training and the content compiler
        args.plugins.install()
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
