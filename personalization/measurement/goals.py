"""Which goals an experience counts: the configured ones, never whatever a client invents.

A conversion's ``goal`` is free text from the visitor's browser, sent with the public delivery key.
Counting every name an event carries would give every experience the visitor saw one more results
section per invented name (two requests once grew one page from 52 kB to 9.5 MB). So each
experience counts only its allowed goals:

* an experience with a ``goals`` list counts exactly those;
* one without (Ninetailed's have none) counts the space's declared goals — the ``goals`` list of
  the space's ``varySettings`` entry — or :data:`DEFAULT_GOALS` when the space declares none.

Other goals are not counted for the experience; the aggregator adds them to its
``discarded`` counts instead (reason ``goal``), so nothing is dropped silently.

The aggregator gets a :class:`GoalPolicy` from whoever holds the content (the serving process, or
``vary aggregate`` reading the stored content) and hands it to the outcome script as one small JSON
argument per call: no per-entry or per-visitor storage, and a changed goal list applies from the
next round on. :func:`policy_for` caches the policy per content version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import msgspec
from msgspec import Struct

from personalization.types import RESERVED_GOAL_PREFIX, Experience, goal_name_problem

__all__ = [
    "DEFAULT_GOALS",
    "MAX_CONVERSIONS_PER_MINUTE",
    "MAX_GOALS",
    "RESERVED_GOAL_PREFIX",
    "GoalPolicy",
    "SpaceGoals",
    "goal_name_problem",
    "goal_policy_of",
    "policy_for",
]

#: What an experience without a ``goals`` list counts when the space declares no goals either.
DEFAULT_GOALS: tuple[str, ...] = ("purchase", "signup")
#: At most this many goals are counted (and shown) per experience; more in content are cut.
MAX_GOALS = 32
#: Plausibility limit the serving process and ``vary aggregate`` run with: conversions and purchases
#: counted per visitor, experience and minute (more are ``discarded``, reason ``rate``); it also
#: turns on "one survey answer per metric, visitor, experience and day" (reason ``survey_repeat``).
MAX_CONVERSIONS_PER_MINUTE = 10

_ENCODER = msgspec.json.Encoder()


class GoalPolicy(Struct, frozen=True, kw_only=True):
    """The goals each experience counts: ``by_experience`` for those with a ``goals`` list,
    ``default`` (the space's declared goals) for every other experience key."""

    by_experience: dict[str, tuple[str, ...]] = {}
    default: tuple[str, ...] = DEFAULT_GOALS

    def allowed(self, experience: str) -> tuple[str, ...]:
        return self.by_experience.get(experience, self.default)

    def encoded(self) -> bytes:
        """The outcome script's argument: ``{"x": {experience: [goal, …]}, "d": [goal, …]}``."""
        return _ENCODER.encode({"x": self.by_experience, "d": self.default})


_cache: dict[str, tuple[GoalPolicy, bytes]] = {}


def policy_for(
    version: str, experiences: Iterable[Experience] | Mapping[str, Experience], space_goals: Sequence[str] | None
) -> tuple[GoalPolicy, bytes]:
    """The policy (and its encoded form) of one content version, cached per ``version``.

    ``space_goals`` is the space's declared list (``None``: not declared, :data:`DEFAULT_GOALS`)."""
    hit = _cache.get(version)
    if hit is not None:
        return hit
    values = experiences.values() if isinstance(experiences, Mapping) else experiences
    default = tuple(dict.fromkeys(space_goals))[:MAX_GOALS] if space_goals is not None else DEFAULT_GOALS
    policy = GoalPolicy(
        by_experience={x.key: tuple(dict.fromkeys(x.goals))[:MAX_GOALS] for x in values if x.goals},
        default=default,
    )
    if len(_cache) > 8:
        _cache.clear()
    _cache[version] = (policy, policy.encoded())
    return _cache[version]


class SpaceGoals(Protocol):
    """What :func:`goal_policy_of` reads of a content snapshot (``content.snapshot.ContentSnapshot``)."""

    @property
    def version(self) -> str: ...
    @property
    def experiences(self) -> Mapping[str, Experience]: ...
    @property
    def goals(self) -> tuple[str, ...] | None: ...


def goal_policy_of(snapshot: SpaceGoals | None) -> GoalPolicy:
    """The policy of the content being served; before any content is loaded, the default for every
    experience (an invented goal is never counted, not even then)."""
    if snapshot is None:
        return _NO_CONTENT
    return policy_for(snapshot.version, snapshot.experiences, snapshot.goals)[0]


_NO_CONTENT = GoalPolicy()
