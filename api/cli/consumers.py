"""``vary aggregate`` and ``vary sinks``: the stream consumers as processes of their own.

``vary aggregate`` also runs the guardrail loop (:mod:`personalization.measurement.guardrail_monitor`),
which belongs where the counts are fresh. ``vary serve`` runs both inside every API worker by default; a deployment that scales them apart
runs ``vary serve --no-aggregate --no-sinks`` plus these. Both read the Redis ``vary serve`` uses
(``VARY_REDIS_URL``, required), name their consumer ``<host>-<pid>`` unless ``--consumer`` says
otherwise, and stop on SIGTERM/SIGINT after the batch in hand.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys

from api.settings import Settings

__all__ = ["add_consumer_parsers", "aggregate_command", "sinks_command"]


def add_consumer_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``sinks`` and ``aggregate`` to the ``vary`` subcommands."""
    sinks = sub.add_parser("sinks", help="run the event sinks (webhook, Segment, plugins') as their own process")
    sinks.add_argument("--consumer", help="consumer name in each sink's group (default: host-pid)")
    aggregate = sub.add_parser("aggregate", help="run the measurement consumer (exposures + events → results)")
    aggregate.add_argument("--consumer", help="consumer name in the group (default: host-pid)")


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _consumer_name(settings: Settings, args: argparse.Namespace, command: str) -> str | None:
    """This process's consumer name in the stream groups (``--consumer``, else host and pid);
    ``None``, said on stderr, when there is no Redis to consume from."""
    if not settings.redis_url:
        print(f"vary {command}: set VARY_REDIS_URL to the Redis that `vary serve` uses", file=sys.stderr)
        return None
    return args.consumer or f"{socket.gethostname()}-{os.getpid()}"


def aggregate_command(settings: Settings, args: argparse.Namespace) -> int:
    """The measurement consumer as its own process; SIGTERM/SIGINT finish the batch in hand and stop."""
    from api.cli.stored_goals import StoredGoals
    from api.plugins import load_plugins
    from api.redis_client import async_redis
    from api.runtime import hand_back_at_shutdown, stream_retention
    from personalization.measurement.aggregation import Aggregator
    from personalization.measurement.goals import MAX_CONVERSIONS_PER_MINUTE
    from personalization.measurement.guardrail_monitor import GuardrailMonitor
    from personalization.store.migrate import migrate

    consumer = _consumer_name(settings, args, "aggregate")
    if consumer is None:
        return 2

    async def run() -> None:
        redis = async_redis(settings)  # one server or a cluster
        await migrate(redis)  # visitor state under the current key schema before counting anything
        stop = _stop_on_signals()
        goals = StoredGoals(redis, link_depth=settings.content_link_depth,
                            plugin_types=load_plugins().policy_types())
        await goals.refresh()  # the content the serving workers stored: what each experience counts
        aggregator = Aggregator(
            redis, consumer=consumer, partitions=settings.stream_partitions,
            claim_idle_ms=settings.aggregate_claim_idle_ms,
            goal_policy=goals, max_conversions_per_minute=MAX_CONVERSIONS_PER_MINUTE,
        )
        await aggregator.ensure_groups()
        following = asyncio.create_task(goals.run_forever(stop))
        guardrails = GuardrailMonitor(
            redis, lambda: goals.snapshot.experiences.values() if goals.snapshot is not None else (),
            every_s=settings.guardrail_check_s, alpha=settings.guardrail_alpha,
            min_sample=settings.guardrail_min_sample,
        )
        checking = asyncio.create_task(guardrails.run_forever(stop))
        print(f"vary aggregate: consumer {consumer} reading {len(aggregator.streams)} streams", flush=True)
        retention = stream_retention(settings, redis)
        trimming = asyncio.create_task(retention.run_forever(stop)) if retention is not None else None
        try:
            await aggregator.run_forever(stop, claim_every_s=settings.aggregate_claim_every_s)
        finally:
            stop.set()
            await hand_back_at_shutdown(aggregator)
            await following
            await checking
            if trimming is not None:
                await trimming
            await redis.aclose()

    asyncio.run(run())
    return 0


def sinks_command(settings: Settings, args: argparse.Namespace) -> int:
    """The sink runners as their own process (api/plugins.py builds them); SIGTERM/SIGINT stop them."""
    from api.plugins import load_plugins
    from api.redis_client import async_redis

    consumer = _consumer_name(settings, args, "sinks")
    if consumer is None:
        return 2

    async def run() -> int:
        redis = async_redis(settings)
        runners = load_plugins().sink_runners(settings, redis, consumer)
        if not runners:
            print("vary sinks: no sink configured (VARY_SINK_WEBHOOK_URL, VARY_SINK_SEGMENT_WRITE_KEY or a "
                  "plugin's sinks)", file=sys.stderr)
            await redis.aclose()
            return 2
        stop = _stop_on_signals()
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
