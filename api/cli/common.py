"""What the ``vary`` sub-commands share: how they report an error, reach Redis, find an experience,
and print tables.

Every command takes the :class:`~api.settings.Settings` and the parsed arguments and returns an exit
code: 0 ok, 1 the work failed, 2 a usage or setup problem. Errors go to stderr as ``vary: …``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from api.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from personalization.plugins import Registry
    from personalization.types import Experience

__all__ = ["NO_REDIS", "err", "with_redis", "load_experience", "utc", "table", "number"]

T = TypeVar("T")

NO_REDIS = "VARY_REDIS_URL is not set"


def err(message: str) -> None:
    """``vary: message`` on stderr."""
    print(f"vary: {message}", file=sys.stderr)


def with_redis(settings: Settings, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``work(redis)`` on a fresh client of ``VARY_REDIS_URL`` (the caller checked it is set)."""
    from api.redis_client import async_redis

    async def run() -> T:
        assert settings.redis_url
        redis = async_redis(settings)  # one server or a cluster
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    return asyncio.run(run())


def plugin_registry(args: argparse.Namespace) -> Registry:
    """The plugins ``main`` loaded for this command (``_NEED_PLUGINS``); empty when it loaded none."""
    from personalization.plugins import Registry

    plugins = getattr(args, "plugins", None)
    return plugins.registry if plugins is not None else Registry()


def load_experience(
    settings: Settings, key: str, plugin_types: frozenset[str] = frozenset()
) -> Experience | None:
    """The experience ``key`` from the configured content (``None``, said on stderr, when absent).

    ``plugin_types``: the experience types the loaded plugins add (valid besides the built-in ones)."""
    from api.runtime import content_source_for
    from content import compile_snapshot
    from personalization.decision.audience_validate import validate_condition

    try:
        snapshot = compile_snapshot(
            content_source_for(settings).load(), plugin_types=plugin_types, validate_condition=validate_condition
        )
    except Exception as exc:  # any content failure: the caller decides whether it can go on
        err(f"could not load the content to look up experience {key!r}: {exc}")
        return None
    experience = snapshot.experiences.get(key)
    if experience is None:
        known = ", ".join(sorted(snapshot.experiences)) or "none"
        err(f"experience {key!r} is not in the content (experiences: {known})")
    return experience


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns, two spaces apart, as lines."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = []
    for row in (header, *rows):
        lines.append(indent + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return lines


def number(value: float) -> str:
    """A metric to 4 places, ``nan`` when undefined."""
    return "nan" if math.isnan(value) else f"{value:.4f}"
