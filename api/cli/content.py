"""The content commands: ``vary sync`` (compile the content once, print its issues) and
``vary cms install`` (the command line over :func:`content.installer.install_content_model`).

``api/cli/main.py`` calls :func:`add_sync_parser` and :func:`add_cms_parser` while building its
parser. ``vary cms`` needs no Vary settings: everything comes from the flags (a management token is
not a Vary setting, and it is used once).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from api.settings import Settings
from content.installer import InstallError, install_content_model

__all__ = ["add_sync_parser", "sync_command", "add_cms_parser", "cms_command"]


def add_sync_parser(subparsers: Any) -> None:
    """Add ``sync`` to a parser's subparsers."""
    sync = subparsers.add_parser("sync", help="load and compile the content once; print content issues")
    sync.add_argument("--strict", action="store_true", help="exit 1 when there are content issues")


def sync_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vary sync``: compile the configured content; exit 1 on issues with ``--strict``."""
    from api.cli.common import plugin_registry
    from api.runtime import content_source_for
    from content import compile_snapshot
    from personalization.decision.audience_validate import validate_condition

    snapshot = compile_snapshot(
        content_source_for(settings).load(),
        plugin_types=frozenset(plugin_registry(args).policy_types()),
        validate_condition=validate_condition,
    )
    print(
        f"content {snapshot.version}: {len(snapshot.entries)} entries, "
        f"{len(snapshot.experiences)} experiences, {len(snapshot.issues)} issues"
    )
    for issue in snapshot.issues:
        print(f"  {issue.entry_id} ({issue.content_type}): {issue.problem} — fix: {issue.fix}")
    return 1 if snapshot.issues and args.strict else 0


def _names(values: list[str] | None) -> list[str]:
    """``--add-to hero,banner --add-to page`` → ``["hero", "banner", "page"]``."""
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


def add_cms_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``cms`` (with its ``install`` subcommand) to a parser's subparsers; returns the ``cms`` parser."""
    cms = subparsers.add_parser("cms", help="manage Vary's content model in a Contentful space")
    commands = cms.add_subparsers(dest="cms_command", required=True)
    install = commands.add_parser(
        "install",
        help="create or update varyAudience, varyExperience and varyJourney, and add varyExperiences to content types",
        description=(
            "Install Vary's content model with the Content Management API. Safe to run again: "
            "content types that already match are not touched."
        ),
    )
    install.add_argument("--space", required=True, help="space id")
    install.add_argument("--environment", default="master", help="environment id (default: master)")
    install.add_argument(
        "--management-token", required=True,
        help="a Content Management API token; '-' reads it from standard input",
    )
    install.add_argument("--api-url", default="api.contentful.com",
                         help="management API host[:port] (default: api.contentful.com)")
    install.add_argument("--insecure-http", action="store_true", help="use http:// (local test servers only)")
    install.add_argument(
        "--add-to", action="append", metavar="TYPE[,TYPE…]",
        help="content types to personalize: each gets a varyExperiences field (repeatable)",
    )
    install.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    return cms


def cms_command(args: argparse.Namespace) -> int:
    """Run ``vary cms <command>``; prints a report and returns the exit code (0 ok, 1 failed)."""
    if args.cms_command != "install":  # pragma: no cover - argparse allows only the known commands
        print(f"vary cms: unknown command {args.cms_command!r}", file=sys.stderr)
        return 2
    token = args.management_token
    if token == "-":
        token = sys.stdin.readline().strip()
    try:
        report = install_content_model(
            token,
            args.space,
            args.environment,
            add_to=_names(args.add_to),
            api_url=args.api_url,
            https=not args.insecure_http,
            dry_run=args.dry_run,
        )
    except InstallError as exc:
        print(f"vary cms install: {exc}", file=sys.stderr)
        return 1
    print(report.render())
    return 0
