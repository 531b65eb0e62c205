"""How Vary runs plugins safely: guards around every seam, and the registry the app hands around.

A plugin is one :class:`~personalization.seams.Plugin` value that names the seams it fills (the
Protocols are in :mod:`personalization.seams`). It reaches Vary either through the Python entry
point group ``vary.plugins`` (``api/plugins.py`` loads them) or in code, through
``create_app(settings, plugins=[...])``. The seams:

============================  ========================================================================
``attributes``                :class:`AttributeSource` — async; adds attributes (e.g. a CRM tier) to
                              the visitor before audiences are evaluated
``feature_extractors``        :class:`FeatureExtractor` — extra model features; passed to
                              :func:`~personalization.decision.features.build_features`, which training and
                              serving share, so both see the same features
``sinks``                     :class:`EventSink` — where exposures and events go besides Redis; run
                              by :mod:`personalization.sinks.runner`, off the request path
``policies``                  :class:`ExperiencePolicy` — a new experience ``type``
``content_source``            a factory of a ``content.sources.ContentSource`` (selected with
                              ``VARY_CONTENT_SOURCE=plugin:<plugin name>``)
============================  ========================================================================

The contract for failures is the same everywhere: a plugin can never fail or stall a decision.
:class:`GuardedAttributes` cuts every attribute lookup off at the plugin's ``timeout_s`` and treats
an exception as "no attributes"; :func:`guard_extractor` and :func:`guard_policy` turn an exception
into "no extra features" and "baseline". Every failure is logged and counted in the plugin's
:class:`PluginHealth`.

A :class:`Registry` holds the guarded extractors and policies of one app (or one ``vary`` command).
It is a value, not a module global: the app builds it once and passes it to whatever needs it —
the :class:`~personalization.service.Personalizer` (which hands it to ``decide()``), the content
compiler (its :meth:`Registry.policy_types`), training (its extractors). So the pure decision code
reads nothing process-wide, and two apps in one process (tests) cannot see each other's plugins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from personalization.seams import (
    AttributeSource,
    AttributeValue,
    ExperiencePolicy,
    FeatureExtractor,
    FeatureRow,
)
from personalization.types import Assignment, Experience, Profile, Visitor

__all__ = [
    "AttributeLookup",
    "PluginHealth",
    "GuardedAttributes",
    "guard_extractor",
    "guard_policy",
    "Registry",
]

log = logging.getLogger("vary.plugins")


# --------------------------------------------------------------------------------------------- health


@dataclass(slots=True)
class PluginHealth:
    """Counters a plugin's guards keep: what ``GET /v1/plugins`` shows."""

    calls: int = 0
    failures: int = 0
    timeouts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None

    def failed(self, error: str, timed_out: bool = False) -> None:
        self.failures += 1
        if timed_out:
            self.timeouts += 1
        self.last_error = error
        self.last_error_at = time.time()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------- guards


@dataclass(frozen=True, slots=True)
class _Lookup:
    plugin: str
    source: AttributeSource
    timeout_s: float
    health: PluginHealth


class GuardedAttributes:
    """All attribute sources of all plugins, run concurrently, each under its plugin's deadline.

    ``await guarded(visitor)`` never raises and never takes much longer than the largest deadline:
    a source that raises or times out contributes nothing, is logged, and is counted.
    """

    def __init__(self) -> None:
        self._lookups: list[_Lookup] = []

    def add(self, plugin: str, source: AttributeSource, timeout_s: float, health: PluginHealth) -> None:
        self._lookups.append(_Lookup(plugin, source, timeout_s, health))

    def __bool__(self) -> bool:
        return bool(self._lookups)

    async def _one(self, lookup: _Lookup, visitor: Visitor) -> Mapping[str, AttributeValue]:
        lookup.health.calls += 1
        try:
            async with asyncio.timeout(lookup.timeout_s):
                found = await lookup.source(visitor)
            if not isinstance(found, Mapping):
                raise TypeError(f"returned {type(found).__name__}, not a mapping of attributes")
            return found
        except TimeoutError:
            lookup.health.failed(f"timed out after {lookup.timeout_s:g} s", timed_out=True)
            log.warning("plugin %s: attribute lookup timed out after %g s; deciding without it",
                        lookup.plugin, lookup.timeout_s)
        except Exception as exc:  # a plugin's bug must not fail the request
            lookup.health.failed(_describe(exc))
            log.warning("plugin %s: attribute lookup failed (%s); deciding without it",
                        lookup.plugin, _describe(exc))
        return {}

    async def __call__(self, visitor: Visitor) -> dict[str, AttributeValue]:
        if len(self._lookups) == 1:
            return dict(await self._one(self._lookups[0], visitor))
        merged: dict[str, AttributeValue] = {}
        for found in await asyncio.gather(*(self._one(lookup, visitor) for lookup in self._lookups)):
            merged.update(found)
        return merged


def guard_extractor(plugin: str, extractor: FeatureExtractor, health: PluginHealth) -> FeatureExtractor:
    """The extractor, with an exception turned into "no extra features" (logged and counted)."""

    def guarded(visitor: Visitor, profile: Profile, now: float) -> Mapping[str, float | str]:
        health.calls += 1
        try:
            return extractor(visitor, profile, now)
        except Exception as exc:
            health.failed(_describe(exc))
            log.warning("plugin %s: feature extractor failed (%s); its features are left out",
                        plugin, _describe(exc))
            return {}

    return guarded


class _GuardedPolicy:
    def __init__(self, plugin: str, policy: ExperiencePolicy, health: PluginHealth) -> None:
        self.type = policy.type
        self._plugin = plugin
        self._policy = policy
        self._health = health

    def assign(
        self,
        experience: Experience,
        visitor_id: str,
        sticky: int | None,
        attributes: Mapping[str, Any],
        context: FeatureRow,
    ) -> Assignment:
        self._health.calls += 1
        try:
            return self._policy.assign(experience, visitor_id, sticky, attributes, context)
        except Exception as exc:
            self._health.failed(_describe(exc))
            log.warning("plugin %s: policy %r failed (%s); serving the baseline",
                        self._plugin, self.type, _describe(exc))
            return Assignment(
                experience=None,
                variant=0,
                holdout=False,
                propensity=1.0,
                reason=f"baseline: the {self.type!r} policy failed",
            )


def guard_policy(plugin: str, policy: ExperiencePolicy, health: PluginHealth) -> ExperiencePolicy:
    """The policy, with an exception turned into the baseline (no experience logged)."""
    return _GuardedPolicy(plugin, policy, health)


# ------------------------------------------------------------------------------------------- registry


@dataclass
class Registry:
    """The guarded feature extractors and experience policies of one app (module docstring).

    ``decide()`` receives it (it has the ``extractors`` and ``policies`` of
    :class:`~personalization.seams.PluginSeams`); the content compiler gets :meth:`policy_types`.
    """

    extractors: tuple[FeatureExtractor, ...] = ()
    policies: dict[str, ExperiencePolicy] = field(default_factory=dict)

    def install(
        self,
        extractors: Sequence[FeatureExtractor] = (),
        policies: Sequence[ExperiencePolicy] = (),
        builtin_types: Sequence[str] = ("personalization", "ab_test", "bandit"),
    ) -> Callable[[], None]:
        """Add extractors and policies; returns the function that removes exactly these again.

        A policy may not replace a built-in type or another plugin's type: that would silently change
        how running experiments assign visitors.
        """
        for policy in policies:
            if policy.type in builtin_types:
                raise ValueError(f"policy type {policy.type!r} is built in; choose another name")
            if policy.type in self.policies:
                raise ValueError(f"policy type {policy.type!r} is registered twice")
        added_extractors = tuple(extractors)
        self.extractors = self.extractors + added_extractors
        for policy in policies:
            self.policies[policy.type] = policy

        def undo() -> None:
            self.extractors = tuple(e for e in self.extractors if e not in added_extractors)
            for policy in policies:
                if self.policies.get(policy.type) is policy:
                    del self.policies[policy.type]

        return undo

    def policy(self, experience_type: str) -> ExperiencePolicy | None:
        return self.policies.get(experience_type)

    def policy_types(self) -> tuple[str, ...]:
        return tuple(self.policies)


AttributeLookup = Callable[[Visitor], Awaitable[Mapping[str, AttributeValue]]]
