"""Experiences and audiences compiled from a space, whichever content model it uses.

A space may model experiences with Vary's own content types (:mod:`.native`), with Contentful
Personalization's (:mod:`.ninetailed`), or both; :func:`compile_experiences` compiles both into one
:class:`~content.experiences.base.CompiledExperiences`, so selection, exposures and measurement do
not know which model an experience came from. :mod:`.base` holds what the two compilers share.
"""

from __future__ import annotations

from content.experiences.base import CompiledExperiences, ConditionValidator, merged
from content.experiences.native import compile_native
from content.experiences.ninetailed import compile_ninetailed
from content.items import ContentItems

__all__ = ["CompiledExperiences", "ConditionValidator", "compile_experiences"]


def compile_experiences(
    items: ContentItems,
    default_locale: str,
    *,
    plugin_types: frozenset[str] = frozenset(),
    validate_condition: ConditionValidator | None = None,
) -> CompiledExperiences:
    """Both content models' experiences and audiences, merged.

    Native experiences come first: a Ninetailed experience whose key a native one has is reported
    and left out, and an entry with both ``varyExperiences`` and ``nt_experiences`` runs the native
    ones first. ``plugin_types``: experience types installed plugins add; ``validate_condition``:
    checks audience conditions (Vary's GrowthBook evaluator; unchecked without).
    """
    native = compile_native(
        items, default_locale, plugin_types=plugin_types, validate_condition=validate_condition
    )
    nt = compile_ninetailed(
        items, default_locale, reserved_keys=native.experiences.keys(), validate_condition=validate_condition
    )
    return merged(native, nt)
