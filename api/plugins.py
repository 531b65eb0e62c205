"""Loading plugins: entry points of the group ``vary.plugins`` plus those passed to ``create_app``.

An entry point loads a :class:`~personalization.seams.Plugin`, or a zero-argument callable that
returns one (so the plugin reads its configuration from the environment when Vary starts, not when
it is imported). A plugin package declares it in its ``pyproject.toml``::

    [project.entry-points."vary.plugins"]
    crm = "vary_crm:plugin"

A plugin that fails to import or to build is logged and listed by ``GET /v1/plugins`` with its
error; Vary starts without it. Two plugins with one name: the second is refused the same way.

:class:`Plugins` wraps every seam in its guard (timeouts, error counting — see
:mod:`personalization.plugins`), puts the guarded extractors and policies in its own
:class:`~personalization.plugins.Registry` (:meth:`Plugins.install`, undone at shutdown) — the value
the app hands to the :class:`~personalization.service.Personalizer` and the content compiler — and
builds the sink runners: the built-in webhook and Segment sinks from :class:`~api.settings.Settings`
and every plugin's sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from redis.asyncio import Redis

from api.settings import Settings
from content.items import ContentItems
from content.sources import ContentSource, SyncingSource, SyncResult, count_changes
from personalization.plugins import (
    GuardedAttributes,
    PluginHealth,
    Registry,
    guard_extractor,
    guard_policy,
)
from personalization.seams import EventSink, ExperiencePolicy, FeatureExtractor, Plugin
from personalization.sinks import SegmentSink, SinkRunner, WebhookSink

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadedPlugin",
    "Plugins",
    "load_plugins",
    "builtin_sinks",
    "PLUGIN_SOURCE_PREFIX",
]

log = logging.getLogger("vary.plugins")

ENTRY_POINT_GROUP = "vary.plugins"
#: ``VARY_CONTENT_SOURCE=plugin:<name>`` selects the content source of the plugin called ``<name>``.
PLUGIN_SOURCE_PREFIX = "plugin:"


@dataclass
class LoadedPlugin:
    """One plugin as loaded: the plugin (``None`` when loading failed), where it came from, its health."""

    name: str
    origin: str
    plugin: Plugin | None
    health: PluginHealth = field(default_factory=PluginHealth)
    error: str | None = None


@dataclass(frozen=True)
class NamedSink:
    """A sink and who provides it (``builtin`` or the plugin's name)."""

    provider: str
    sink: EventSink


class _ReloadingSource:
    """A plugin's plain ``ContentSource`` as a ``SyncingSource``: each sync loads everything again."""

    def __init__(self, source: ContentSource) -> None:
        self._source = source

    def __repr__(self) -> str:
        return f"plugin source {self._source!r}"

    def load(self) -> ContentItems:
        return self._source.load()

    def sync(self, previous: ContentItems | None, token: str | None) -> SyncResult:
        items = self._source.load()
        return SyncResult(items=items, token=None, changed=count_changes(previous, items), full=True)


class Plugins:
    """Every loaded plugin, with its seams guarded (module docstring)."""

    def __init__(self, loaded: Sequence[LoadedPlugin]) -> None:
        self.loaded = list(loaded)
        self.attributes = GuardedAttributes()
        #: The guarded extractors and policies, once :meth:`install` has run: what decisions,
        #: training and the content compiler are given.
        self.registry = Registry()
        self._extractors: list[FeatureExtractor] = []
        self._policies: list[ExperiencePolicy] = []
        self.sinks: list[NamedSink] = []
        for entry in self.loaded:
            plugin = entry.plugin
            if plugin is None:
                continue
            for source in plugin.attributes:
                self.attributes.add(plugin.name, source, plugin.timeout_s, entry.health)
            self._extractors += [guard_extractor(plugin.name, e, entry.health) for e in plugin.feature_extractors]
            self._policies += [guard_policy(plugin.name, p, entry.health) for p in plugin.policies]
            self.sinks += [NamedSink(plugin.name, sink) for sink in plugin.sinks]

    def install(self) -> Callable[[], None]:
        """Put the extractors and policies in :attr:`registry`; returns the undo."""
        if not self._extractors and not self._policies:
            return lambda: None
        return self.registry.install(self._extractors, self._policies)

    def policy_types(self) -> frozenset[str]:
        """The experience types the installed plugins add: what the content compiler accepts."""
        return frozenset(self.registry.policy_types())

    def content_source(self, setting: str) -> SyncingSource:
        """The source ``VARY_CONTENT_SOURCE=plugin:<name>`` names; ``ValueError`` saying why not."""
        name = setting.removeprefix(PLUGIN_SOURCE_PREFIX)
        for entry in self.loaded:
            if entry.name == name and entry.plugin is not None:
                if entry.plugin.content_source is None:
                    raise ValueError(f"VARY_CONTENT_SOURCE={setting}: plugin {name!r} has no content source")
                source = entry.plugin.content_source()
                if isinstance(source, SyncingSource):
                    return source
                if isinstance(source, ContentSource):
                    return _ReloadingSource(source)
                raise ValueError(f"VARY_CONTENT_SOURCE={setting}: plugin {name!r} gave {source!r}, "
                                 "which has no load() method")
        known = ", ".join(e.name for e in self.loaded if e.plugin is not None) or "none loaded"
        raise ValueError(f"VARY_CONTENT_SOURCE={setting}: no plugin named {name!r} ({known})")

    def sink_runners(self, settings: Settings, redis: Redis, consumer: str) -> list[SinkRunner]:
        """One runner per sink: the built-in ones configured in ``settings``, then the plugins'."""
        sinks = [NamedSink("builtin", sink) for sink in builtin_sinks(settings)] + self.sinks
        names: set[str] = set()
        runners: list[SinkRunner] = []
        for named in sinks:
            if named.sink.name in names:
                log.error("two sinks are called %r; the one from %s is not run", named.sink.name, named.provider)
                continue
            names.add(named.sink.name)
            runners.append(SinkRunner(
                redis,
                named.sink,
                consumer=consumer,
                partitions=settings.stream_partitions,
                batch_size=settings.sink_batch_size,
                max_attempts=settings.sink_max_attempts,
                backoff_s=settings.sink_backoff_s,
            ))
        return runners


def builtin_sinks(settings: Settings) -> list[EventSink]:
    """The webhook and Segment sinks, for those that are configured."""
    sinks: list[EventSink] = []
    if settings.sink_webhook_url and settings.sink_webhook_secret:
        sinks.append(WebhookSink(settings.sink_webhook_url, settings.sink_webhook_secret))
    if settings.sink_segment_write_key:
        sinks.append(SegmentSink(settings.sink_segment_write_key, settings.sink_segment_url))
    return sinks


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _build(value: object, origin: str) -> Plugin:
    if callable(value) and not isinstance(value, Plugin):
        value = value()
    if not isinstance(value, Plugin):
        raise TypeError(f"{origin} gave {type(value).__name__}, not a vary Plugin")
    return value


def _discover(group: str) -> list[LoadedPlugin]:
    found: list[LoadedPlugin] = []
    for point in entry_points(group=group):
        origin = f"entry point {point.name} = {point.value}"
        try:
            plugin = _build(point.load(), origin)
        except Exception as exc:  # a broken plugin must not stop Vary
            log.error("plugin %s not loaded: %s", origin, _describe(exc))
            found.append(LoadedPlugin(name=point.name, origin=origin, plugin=None, error=_describe(exc)))
            continue
        found.append(LoadedPlugin(name=plugin.name, origin=origin, plugin=plugin))
    return found


def load_plugins(
    plugins: Sequence[Plugin] = (), *, discover: bool = True, group: str = ENTRY_POINT_GROUP
) -> Plugins:
    """The plugins passed in code, then those the entry points name (``discover=False``: code only)."""
    candidates = [LoadedPlugin(name=p.name, origin="code", plugin=p) for p in plugins]
    if discover:
        candidates += _discover(group)
    seen: set[str] = set()
    loaded: list[LoadedPlugin] = []
    for entry in candidates:
        if entry.plugin is not None and entry.name in seen:
            entry.error = f"another plugin is already called {entry.name!r}"
            entry.plugin = None
            log.error("plugin %s (%s) not loaded: %s", entry.name, entry.origin, entry.error)
        elif entry.plugin is not None:
            seen.add(entry.name)
            log.info("plugin %s loaded (%s): %s", entry.name, entry.origin, ", ".join(entry.plugin.seams) or "no seams")
        loaded.append(entry)
    return Plugins(loaded)
