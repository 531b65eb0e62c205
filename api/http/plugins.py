"""``GET /v1/plugins`` (admin): the plugins loaded, their seams and health, and every sink's backlog.

Health counts come from this worker's guards (each worker counts its own calls); a sink's backlog
(``pending``: read by a runner but not yet acknowledged, ``dead_letters``) is read from Redis, so it
is the same whichever worker answers and also covers sinks run by ``vary sinks``.
"""

from __future__ import annotations

from litestar import Controller
from litestar.datastructures import State
from msgspec import Struct
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
    calls: int
    failures: int
    timeouts: int
    last_error: str | None
    last_error_at: float | None


class PluginInfo(Struct, frozen=True, kw_only=True):
    name: str
    #: ``code`` (passed to ``create_app``) or the entry point it was loaded from.
    origin: str
    loaded: bool
    #: Why it is not loaded (import error, duplicate name); ``null`` when it is.
    error: str | None
    seams: list[str]
    health: PluginHealthInfo


class SinkInfo(Struct, frozen=True, kw_only=True):
    name: str
    #: ``builtin`` or the plugin that provides the sink.
    provider: str
    #: Whether this worker runs the sink (else ``vary sinks`` or another worker does).
    in_process: bool
    #: Entries read by some runner and not yet acknowledged (delivering or retrying).
    pending: int
    dead_letters: int
    delivered: int | None = None
    failed_attempts: int | None = None
    dead_lettered: int | None = None
    last_error: str | None = None


class PluginList(Struct, frozen=True, kw_only=True):
    plugins: list[PluginInfo]
    sinks: list[SinkInfo]


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
