"""What every ``/v1`` route module shares: the worker's runtime, the snapshot being served, and the
shape of a personalized entry in an answer."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from api.http.auth import key_scope
from api.http.schemas import Includes, PersonalizedEntry
from api.runtime import Runtime
from content import ContentSnapshot
from content.errors import ContentSourceError
from personalization.decision.context import merge_values
from personalization.errors import (
    ContentNotLoaded,
    NotConfigured,
    NotPermitted,
    UnknownExperience,
    UnknownJourney,
    UpstreamFailed,
)
from personalization.service import Personalized
from personalization.types import Experience, Journey

__all__ = [
    "experience_in",
    "header_of",
    "includes_of",
    "journey_in",
    "loaded_snapshot",
    "runtime_of",
    "serving_snapshot",
    "shape_entries",
]


def runtime_of(state: State) -> Runtime:
    """The worker's :class:`Runtime` (set up in the app's lifespan); every route module uses this.

    Read by key: ``state.runtime`` first fails the normal attribute lookup (an ``AttributeError``
    raised and caught) before litestar's ``__getattr__`` finds it, 0.40 µs against 0.07 (issue 22)."""
    return state["runtime"]  # type: ignore[no-any-return]


def header_of(request: Request, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case, as ASGI servers give names), or ``None``.

    Reads the scope's raw header list: ``request.headers`` builds a case-insensitive multidict of
    every header on first use, which cost a personalize request about 4 µs just to read its
    ``User-Agent`` (issue 22)."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def loaded_snapshot(runtime: Runtime) -> ContentSnapshot:
    """The published snapshot being served; :class:`ContentNotLoaded` until content has loaded."""
    snapshot = runtime.snapshot
    if snapshot is None:
        raise ContentNotLoaded()
    return snapshot


def experience_in(snapshot: ContentSnapshot, key: str) -> Experience:
    """The experience with this key in the snapshot; :class:`UnknownExperience` if there is none."""
    experience = snapshot.experiences.get(key)
    if experience is None:
        raise UnknownExperience(key)
    return experience


def journey_in(snapshot: ContentSnapshot, key: str) -> Journey:
    """The journey with this key in the snapshot; :class:`UnknownJourney` if there is none."""
    journey = snapshot.journeys.get(key)
    if journey is None:
        raise UnknownJourney(key)
    return journey


async def serving_snapshot(runtime: Runtime, request: Request, preview: bool) -> ContentSnapshot:
    """The published snapshot, or for ``preview=true`` (admin keys only) the drafts."""
    if not preview:
        return loaded_snapshot(runtime)
    if key_scope(request) != "admin":
        raise NotPermitted("preview=true needs an admin key; a delivery key was sent")
    if runtime.preview is None:
        raise NotConfigured("preview needs VARY_CONTENT_SOURCE=contentful and VARY_CONTENTFUL_PREVIEW_TOKEN")
    try:
        return await runtime.preview_snapshot()
    except ContentSourceError as exc:
        raise UpstreamFailed(f"Contentful Preview API failed: {exc}") from exc


def shape_entries(
    result: Personalized, snapshot: ContentSnapshot, locale: str, *, cda: bool = False
) -> list[PersonalizedEntry]:
    """Each decision as an answer entry; merge tags are filled from the visitor, and a hidden
    variant (``""`` id) renders nothing. ``cda``: the Content Delivery API's shape (``sys``,
    ``fields`` with links as links, ``metadata``; merge tags stay embedded entries)."""
    values = merge_values(result.outcome.visitor) if snapshot.has_merge_tags and not cda else None
    shaped: list[PersonalizedEntry] = []
    for d in result.outcome.decisions:
        sys = fields = None
        if d.variant_entry_id and cda:
            sys, fields = snapshot.links.cda_entry(d.variant_entry_id, locale)
        elif d.variant_entry_id:
            fields = snapshot.fields(d.variant_entry_id, locale, values)
        shaped.append(
            PersonalizedEntry(
                entry_id=d.entry_id,
                content_type=snapshot.content_type_of(d.variant_entry_id or d.entry_id),
                experience=d.experience,
                variant=d.variant,
                variant_entry_id=d.variant_entry_id,
                is_control=d.is_control,
                holdout=d.holdout,
                propensity=d.propensity,
                reason=d.reason,
                exposure_id=d.exposure_id,
                fields=fields,
                hidden=not d.variant_entry_id,
                locale=locale,
                sys=sys,
                metadata=snapshot.links.cda_metadata(d.variant_entry_id) if sys is not None else None,
            )
        )
    return shaped


def includes_of(
    entries: list[PersonalizedEntry], snapshot: ContentSnapshot, locale: str, *, cda: bool
) -> Includes:
    """What the served variants link to, each entity once (see :meth:`content.links.LinkIndex.includes`)."""
    served = [entry.variant_entry_id for entry in entries if entry.variant_entry_id]
    linked_entries, linked_assets = snapshot.links.includes(served, locale, cda=cda)
    return Includes(entries=linked_entries, assets=linked_assets)
