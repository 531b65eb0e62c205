"""What can go wrong when Vary is asked for something, said once, in the words of the domain.

A request that cannot be served is one of these exceptions, raised where the domain finds out (the
recorder rejects a batch; a route finds no experience with that key). None of them knows about HTTP:
:mod:`api.http.errors` is the one place that turns a branch of this tree into a status code, and the
CLI prints ``str(exc)``. The message is written for the person who sent the request — what was wrong
and, where it helps, what to do — and ``problems`` says *where* (``events[3].score``) when a request
has many parts.

Error tree::

    VaryError                     a request cannot be served; str() says why
     ├── NotFound                 the thing the request names is not there
     │    ├── UnknownEntry        no published entry with that id (or several: ``problems``)
     │    ├── UnknownExperience   no experience with that key in the served content
     │    ├── UnknownJourney      no journey with that key in the served content
     │    ├── UnknownModel        no registered model with that version
     │    └── FeatureOff          the feature is switched off in the settings (the demo page)
     ├── InvalidInput             the request is well-formed but makes no sense; ``problems`` says where
     │    ├── InvalidPeriod       a date that cannot be read, or since after until, or too long a range
     │    ├── RejectedBatch       every item of a batch was rejected: nothing was recorded
     │    └── NotConfigured       the request needs a part of Vary this installation has not set up
     ├── NotAuthenticated         who sent the request cannot be checked (webhooks without a secret)
     ├── NotPermitted             the caller's key may not ask for this (preview with a delivery key)
     ├── Unusable                 the input is understood but cannot be used (a model file refused)
     ├── Conflict                 the request would replace something that must not change
     │    ├── ModelVersionExists  a model with that version is registered already: versions are immutable
     │    └── LaunchGateRefused   a policy's launch gate has not passed it (its verdict answered in ``extra``)
     └── Unavailable              something Vary depends on is not there now; retry later
          ├── ContentNotLoaded    content has not loaded yet (see /ready)
          ├── StorageUnavailable  Redis cannot be reached and nothing could be kept; ``retry_after_s``
          └── UpstreamFailed      a service Vary asked on the caller's behalf failed (Contentful Preview)

Errors of other parts keep their own trees and are mapped alongside: :mod:`content.errors` and
:mod:`content.webhooks` (content may not import this module), the model registry's
``UnknownModelVersion`` and the evaluation and model-file errors in :mod:`personalization.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Conflict",
    "ContentNotLoaded",
    "FeatureOff",
    "InvalidInput",
    "InvalidPeriod",
    "LaunchGateRefused",
    "ModelVersionExists",
    "NotAuthenticated",
    "NotConfigured",
    "NotFound",
    "NotPermitted",
    "Problem",
    "RejectedBatch",
    "StorageUnavailable",
    "Unavailable",
    "UnknownEntry",
    "UnknownExperience",
    "UnknownJourney",
    "UnknownModel",
    "Unusable",
    "UpstreamFailed",
    "VaryError",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one part of a request: ``key`` is where (``events[2].score``)."""

    key: str
    message: str


class VaryError(Exception):
    """A request cannot be served. ``str(exc)`` says why; ``problems`` where, part by part."""

    def __init__(self, message: str, *, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems = tuple(problems)


# ------------------------------------------------------------------------------------ not found


class NotFound(VaryError):
    """The thing the request names is not there."""


class UnknownEntry(NotFound):
    """No published entry with that id; with several unknown ids, ``problems`` names each."""

    @classmethod
    def one(cls, entry_id: str) -> UnknownEntry:
        return cls(f"no published entry with id {entry_id!r}")

    @classmethod
    def among(cls, problems: Sequence[Problem]) -> UnknownEntry:
        return cls("unknown entry ids in the request", problems=problems)


class UnknownExperience(NotFound):
    """No experience with that key in the content being served."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no experience with key {key!r} in the served content")
        self.key = key


class UnknownJourney(NotFound):
    """No journey with that key in the content being served."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no journey with key {key!r} in the served content")
        self.key = key


class UnknownModel(NotFound):
    """No registered model (segment model or policy) with that version."""

    def __init__(self, version: str) -> None:
        super().__init__(f"no model with version {version!r}")
        self.version = version


class FeatureOff(NotFound):
    """The feature is switched off in the settings, so for this installation it does not exist."""


# -------------------------------------------------------------------------------- invalid input


class InvalidInput(VaryError, ValueError):
    """The request is well-formed but makes no sense; ``problems`` says where when it has parts.
    Also a :class:`ValueError`, which is what it is to code that calls the domain directly."""


class InvalidPeriod(InvalidInput):
    """A date or time that cannot be read, ``since`` after ``until``, or a range longer than allowed."""


class RejectedBatch(InvalidInput):
    """Every item of a batch (events, exposure tokens) was rejected, so nothing was recorded."""


class NotConfigured(InvalidInput):
    """The request needs a part of Vary this installation has not set up (e.g. the Preview API)."""


# -------------------------------------------------------------------------- permission, usability


class NotAuthenticated(VaryError):
    """Who sent the request cannot be checked: Contentful webhooks while no signing secret is set.
    (A missing or unknown API key is refused earlier, by the HTTP key guard.)"""


class NotPermitted(VaryError):
    """The caller's key is valid but may not ask for this (``preview=true`` with a delivery key)."""


class Unusable(VaryError):
    """The input is understood but cannot be used: a model file that is refused, say."""


class Conflict(VaryError):
    """The request would replace something that must not change once it exists."""


class ModelVersionExists(Conflict):
    """A model with that version is registered already. A version names one file and one card for
    good (evaluations, logs and exposures refer to it), so a new upload needs a new version."""

    def __init__(self, version: str) -> None:
        super().__init__(
            f"a model with version {version!r} is registered already; versions are immutable, so "
            "register the new model under a new version (retrain, or edit the card's version)"
        )
        self.version = version


class LaunchGateRefused(Conflict):
    """A policy's launch gate has not passed it (failed, erred or still judging); ``gate`` is the
    verdict with its estimates, answered beside the message so the caller sees why."""

    def __init__(self, message: str, gate: object) -> None:
        super().__init__(message)
        self.gate = gate


# ---------------------------------------------------------------------------------- unavailable


class Unavailable(VaryError):
    """Something Vary depends on is not there now; the same request may succeed later."""

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ContentNotLoaded(Unavailable):
    """No content has loaded yet (starting up, or Contentful unreachable since start)."""

    def __init__(self) -> None:
        super().__init__("content is not loaded yet; see /ready")


class StorageUnavailable(Unavailable):
    """Redis cannot be reached and nothing could be kept locally; retry with the same ids."""


class UpstreamFailed(Unavailable):
    """A service Vary asked on the caller's behalf (the Contentful Preview API) failed."""
