"""The seams: every ``typing.Protocol`` a developer implements to extend Vary, in one place.

Vary's core calls these and nothing more specific, so a seam can be filled by the shipped
implementation (Redis, the compiled scikit-learn models), by a plugin, or by a small in-memory
object in a test. This module imports only :mod:`personalization.types`: any package may depend on
it without pulling in I/O libraries or the decision code.

==========================  ==========================================================================
seam                        filled by
==========================  ==========================================================================
:class:`SegmentModel`       :class:`personalization.decision.segments.CompiledSegmentModel`
:class:`RewardModel`        :class:`personalization.decision.policy.CompiledRewardModel`
:class:`ProfileStore`       :class:`personalization.store.profiles.RedisProfileStore`
:class:`ExposureSink`       :class:`personalization.store.exposures.ExposureWriter`
:class:`Catalog`            ``api.runtime.Runtime`` (the content snapshot's experiences)
:class:`AttributeSource`    a plugin: visitor attributes looked up before audiences are evaluated
:class:`FeatureExtractor`   a plugin: extra model features, for training and serving alike
:class:`EventSink`          a plugin or :mod:`personalization.sinks`: exposures and events elsewhere
:class:`ExperiencePolicy`   a plugin: a new experience ``type``
:class:`PluginSeams`        ``personalization.plugins.Registry``: the app's guarded extractors/policies
==========================  ==========================================================================

How a plugin packages these (:class:`Plugin`) is here too; how Vary guards and registers them is
:mod:`personalization.plugins`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from personalization.types import Assignment, Experience, Exposure, Profile, Visitor

if TYPE_CHECKING:
    from personalization.measurement.events import Event
    from personalization.sinks.erasures import VisitorErased
    from personalization.sinks.guardrail_events import GuardrailPaused

__all__ = [
    "FeatureRow",
    "AttributeValue",
    "SegmentModel",
    "RewardModel",
    "ProfileStore",
    "ExposureSink",
    "Catalog",
    "AttributeSource",
    "FeatureExtractor",
    "EventSink",
    "ExperiencePolicy",
    "SinkRecord",
    "SinkError",
    "PermanentSinkError",
    "Plugin",
    "PluginSeams",
    "SEAMS",
    "DEFAULT_ATTRIBUTE_TIMEOUT_S",
]

#: A feature row as a seam receives it: name → number or category.
FeatureRow = Mapping[str, float | str]
#: What an attribute source may return: the same value types a visitor's traits have.
AttributeValue = str | float | int | bool | None

#: Longest an attribute lookup may take before the decision goes on without it (like the profile read).
DEFAULT_ATTRIBUTE_TIMEOUT_S = 0.05
#: The seams a :class:`Plugin` may fill, in the order ``GET /v1/plugins`` lists them.
SEAMS: tuple[str, ...] = ("attributes", "feature_extractors", "sinks", "policies", "content_source")


# ------------------------------------------------------------------------------------------- models


@runtime_checkable
class SegmentModel(Protocol):
    """What serving needs from a segment model: a version to log and P(segment) per feature row."""

    @property
    def version(self) -> str: ...

    @property
    def segments(self) -> tuple[str, ...]: ...

    def score(self, features: FeatureRow) -> dict[str, float]: ...


@runtime_checkable
class RewardModel(Protocol):
    """What serving needs from a learned policy: a version to log, P(reward | x, a) per variant."""

    @property
    def version(self) -> str: ...

    @property
    def n_actions(self) -> int: ...

    def predict(self, features: FeatureRow) -> list[float]: ...


# -------------------------------------------------------------------------------------- I/O and content


class ProfileStore(Protocol):
    """Where profiles live. Vary ships ``RedisProfileStore``; tests may use an in-memory one."""

    async def load(self, visitor_id: str) -> Profile: ...


class ExposureSink(Protocol):
    """Where exposures go. ``submit`` must not block the request: queue, batch, write later.

    ``assignments`` are the new sticky assignments ``(visitor id, experience key, variant)`` to store.
    """

    def submit(self, exposures: Iterable[Exposure], assignments: Iterable[tuple[str, str, int]]) -> None: ...


class Catalog(Protocol):
    """Which experiences hang on an entry. A compiled content snapshot is one."""

    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]: ...


# -------------------------------------------------------------------------------------------- plugins


@runtime_checkable
class AttributeSource(Protocol):
    """Adds attributes to a visitor before audiences are evaluated.

    Called once per decision for visitors who consented to personalization, concurrently with the
    profile read. The returned names become visitor traits (``crm_tier`` → audience rules can use
    ``crm_tier`` and ``traits.crm_tier``); they win over traits the front end sent, since a server-side
    lookup is the more trustworthy of the two. Cut off after the plugin's ``timeout_s``.
    """

    async def __call__(self, visitor: Visitor) -> Mapping[str, AttributeValue]: ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """Extra model features for one visitor. Pure and fast (no I/O): it runs in ``vary train`` over
    every training row and on every scored request, and is not given a timeout."""

    def __call__(self, visitor: Visitor, profile: Profile, now: float) -> Mapping[str, float | str]: ...


@dataclass(frozen=True, slots=True)
class SinkRecord:
    """One stream entry handed to a sink: an exposure, an event, or an erase notice (``kind="erase"``,
    a :class:`~personalization.sinks.erasures.VisitorErased`: the visitor was erased in Vary, so the
    receiver should delete what it holds of them too), or a guardrail pause (``kind="guardrail_paused"``,
    a :class:`~personalization.sinks.guardrail_events.GuardrailPaused`), with where it was read from.

    ``entry_id`` (the Redis stream id) together with ``stream`` is unique and stable across
    redeliveries, so a receiver can deduplicate on it (delivery is at least once).
    """

    kind: Literal["exposure", "event", "erase", "guardrail_paused"]
    stream: str
    entry_id: str
    record: Exposure | Event | VisitorErased | GuardrailPaused

    @property
    def message_id(self) -> str:
        """A stable id for deduplication: the exposure id, the client's event id, else the stream id."""
        own = getattr(self.record, "id", None) if self.kind == "exposure" else getattr(self.record, "event_id", None)
        return f"vary-{self.kind}-{own}" if own else f"vary-{self.stream}-{self.entry_id}"


class SinkError(Exception):
    """A delivery failed and may succeed later (network error, 5xx, 429): the runner retries."""


class PermanentSinkError(SinkError):
    """A delivery failed in a way a retry cannot fix (e.g. 400, 401): dead-lettered at once."""


@runtime_checkable
class EventSink(Protocol):
    """Where exposures and events go besides Redis. ``deliver`` raises :class:`SinkError` (or any
    exception) to have the batch retried with backoff; after the configured attempts the batch is
    dead-lettered to ``vary:sinks:dead:<name>``. An optional ``async aclose()`` is called at shutdown."""

    name: str

    async def deliver(self, batch: Sequence[SinkRecord]) -> None: ...


@runtime_checkable
class ExperiencePolicy(Protocol):
    """A new experience ``type``. Called for visitors the experience's audience matched, after the
    schedule check; returns the :class:`~personalization.types.Assignment` (variant, holdout,
    propensity, reason). Must be pure and fast: it runs on the request path for every such visitor."""

    type: str

    def assign(
        self,
        experience: Experience,
        visitor_id: str,
        sticky: int | None,
        attributes: Mapping[str, Any],
        context: FeatureRow,
    ) -> Assignment: ...


@dataclass(frozen=True)
class Plugin:
    """What an entry point of the group ``vary.plugins`` loads (or a factory returning one).

    ``content_source`` is a zero-argument factory, so a plugin's source (and its configuration, read
    from the environment) is only built when ``VARY_CONTENT_SOURCE=plugin:<name>`` selects it.
    """

    name: str
    attributes: Sequence[AttributeSource] = ()
    feature_extractors: Sequence[FeatureExtractor] = ()
    sinks: Sequence[EventSink] = ()
    policies: Sequence[ExperiencePolicy] = ()
    content_source: Callable[[], Any] | None = None
    #: Per-lookup deadline of this plugin's attribute sources.
    timeout_s: float = DEFAULT_ATTRIBUTE_TIMEOUT_S

    @property
    def seams(self) -> list[str]:
        """The seams this plugin fills, in :data:`SEAMS` order."""
        return [seam for seam in SEAMS if getattr(self, seam)]


class PluginSeams(Protocol):
    """What the decision path needs of the app's plugins: their feature extractors and their
    experience policies by type. ``personalization.plugins.Registry`` is one (already guarded)."""

    @property
    def extractors(self) -> Sequence[FeatureExtractor]: ...

    @property
    def policies(self) -> Mapping[str, ExperiencePolicy]: ...
