"""``GET /v1/plugins`` (admin): the plugins loaded, their seams and health, and every sink's backlog.

Health counts come from this worker's guards (each worker counts its own calls); a sink's backlog
(``pending``: read by a runner but not yet acknowledged, ``dead_letters``) is read from Redis, so it
is the same whichever worker answers and also covers sinks run by ``vary sinks``.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller
from litestar.datastructures import State
from msgspec import Meta, Struct
from redis.exceptions import ResponseError

from api.http.auth import requires_admin
from api.http.common import runtime_of
from api.http.handlers import get
from api.plugins import Plugins
from api.runtime import Runtime
from api.settings import Settings
from personalization.sinks import (
    SinkRunner,
    dead_letter_stream,
    group_name,
    sink_streams,
)

__all__ = ["PluginController", "PluginInfo", "PluginHealthInfo", "SinkInfo", "PluginList"]


class PluginHealthInfo(Struct, frozen=True, kw_only=True):
    calls: Annotated[int, Meta(description="Calls into the plugin since this worker started.")]
    failures: Annotated[int, Meta(description="Calls that raised.")]
    timeouts: Annotated[int, Meta(description="Calls that took longer than the plugin's time budget.")]
    last_error: Annotated[str, Meta(description="The last failure, in words; null without one.")] | None
    last_error_at: (
        Annotated[float, Meta(description="When the last failure happened, Unix seconds; null without one.")] | None
    )


class PluginInfo(Struct, frozen=True, kw_only=True):
    name: Annotated[str, Meta(description="The plugin's name.")]
    origin: Annotated[str, Meta(description="`code` (passed to `create_app`) or the entry point it was loaded from.")]
    loaded: Annotated[bool, Meta(description="Whether the plugin is loaded and in use.")]
    error: (
        Annotated[str, Meta(description="Why it is not loaded (import error, duplicate name); `null` when it is.")]
        | None
    )
    seams: Annotated[list[str], Meta(description="The seams (extension points) the plugin fills.")]
    health: Annotated[PluginHealthInfo, Meta(description="Calls, failures and timeouts of the plugin in this worker.")]


class SinkInfo(Struct, frozen=True, kw_only=True):
    name: Annotated[str, Meta(description="The sink's name.")]
    provider: Annotated[str, Meta(description="`builtin` or the plugin that provides the sink.")]
    in_process: Annotated[
        bool, Meta(description="Whether this worker runs the sink (else `vary sinks` or another worker does).")
    ]
    pending: Annotated[
        int, Meta(description="Entries read by some runner and not yet acknowledged (delivering or retrying).")
    ]
    dead_letters: Annotated[
        int, Meta(description="Entries given up on after every retry, kept in the sink's dead letters.")
    ]
    delivered: (
        Annotated[
            int,
            Meta(description="Entries delivered by this worker's runner; null when this worker does not run the sink."),
        ]
        | None
    ) = None
    failed_attempts: (
        Annotated[
            int,
            Meta(
                description="Delivery attempts that failed (retried later); null when this worker does not run the sink."
            ),
        ]
        | None
    ) = None
    dead_lettered: (
        Annotated[
            int, Meta(description="Entries this worker moved to the dead letters; null when it does not run the sink.")
        ]
        | None
    ) = None
    last_error: Annotated[str, Meta(description="The last delivery error, in words; null without one.")] | None = None


class PluginList(Struct, frozen=True, kw_only=True):
    plugins: Annotated[list[PluginInfo], Meta(description="Every plugin found, loaded or not.")]
    sinks: Annotated[list[SinkInfo], Meta(description="Every sink and its backlog.")]


def _configured_sinks(settings: Settings, plugins: Plugins) -> list[tuple[str, str]]:
    """(name, provider) of every sink this configuration runs somewhere."""
    names: list[tuple[str, str]] = []
    if settings.sink_webhook_url and settings.sink_webhook_secret:
        names.append(("webhook", "builtin"))
    if settings.sink_segment_write_key:
        names.append(("segment", "builtin"))
    names += [(named.sink.name, named.provider) for named in plugins.sinks]
    return list(dict.fromkeys(names))


async def _pending(runtime: Runtime, name: str) -> int:
    total = 0
    for stream, _ in sink_streams(runtime.settings.stream_partitions):
        try:
            summary = await runtime.redis.xpending(stream, group_name(name))
        except ResponseError:  # no group yet: nothing pending
            continue
        total += int(summary.get("pending", 0) if isinstance(summary, dict) else 0)
    return total


class PluginController(Controller):
    path = "/v1/plugins"
    guards = [requires_admin]
    tags = ["plugins"]

    @get("/", summary="Plugins loaded, their seams and health; sinks and their backlog")
    async def list_plugins(self, state: State) -> PluginList:
        plugins: Plugins = state.plugins
        runtime = runtime_of(state)
        infos = [
            PluginInfo(
                name=entry.name,
                origin=entry.origin,
                loaded=entry.plugin is not None,
                error=entry.error,
                seams=entry.plugin.seams if entry.plugin is not None else [],
                health=PluginHealthInfo(
                    calls=entry.health.calls,
                    failures=entry.health.failures,
                    timeouts=entry.health.timeouts,
                    last_error=entry.health.last_error,
                    last_error_at=entry.health.last_error_at,
                ),
            )
            for entry in plugins.loaded
        ]
        running: dict[str, SinkRunner] = {runner.sink.name: runner for runner in runtime.sinks}
        sinks: list[SinkInfo] = []
        for name, provider in _configured_sinks(runtime.settings, plugins):
            runner = running.get(name)
            stats = runner.stats if runner is not None else None
            sinks.append(SinkInfo(
                name=name,
                provider=provider,
                in_process=runner is not None,
                pending=await _pending(runtime, name),
                dead_letters=int(await runtime.redis.xlen(dead_letter_stream(name))),
                delivered=stats.delivered if stats else None,
                failed_attempts=stats.failed_attempts if stats else None,
                dead_lettered=stats.dead_lettered if stats else None,
                last_error=stats.last_error if stats else None,
            ))
        return PluginList(plugins=infos, sinks=sinks)
